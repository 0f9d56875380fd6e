"""``streamd-transfer``: a client for hypervisor hosts that moves images at line rate.

Against any Image API v2 server (streamd or Glance): download, upload, verify, replicate and
compare images. Against streamd's transfer extensions (``GET /v2/info/streamd``) it uses
several connections per image, skips zero runs both ways (``/extents``, ``Upload-Part:
zero``), writes holes, and resumes from what is already there; without them it falls back
to one stream of plain Image API calls. It is a client: it talks HTTP to a server and
imports nothing of the server's layers (an import-linter contract says so).
"""
