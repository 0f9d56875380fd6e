"""The throughput and memory harness: ``python -m bench``.

It starts streamd, generates its own inputs, drives streamd (and, when asked, real Glance)
through the Image API v2 with curl and an asyncio load client, measures the same bytes
against baselines (hashing, disk, a static loopback server) and per upload stage, and
writes a JSON file, a Markdown table and a PNG chart. See bench/README.md.
"""
