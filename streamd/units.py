"""Byte and time units, so that constants say what they count."""

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
TiB = 1024 * GiB

SECONDS = 1.0
