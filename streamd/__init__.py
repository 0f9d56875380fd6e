"""streamd: an image service behind the OpenStack Image API v2, built for throughput."""

__version__ = "0.1.0"
