"""Disk images crafted byte by byte, for the format-inspection tests (no qemu-img needed).

Each builder returns a small, complete image (empty disks: every cluster, grain or block
unallocated) that ``qemu-img info`` reads as the format named, with the virtual size asked
for; the unsafe ones carry exactly the feature that makes them unsafe. ``CASES`` lists the
cases the tests and the Glance recording share: the bytes, the ``disk_format`` they are
uploaded as, and whether Glance's rules accept them.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass

from streamd.units import KiB, MiB

SECTOR = 512


# -- qcow2 -------------------------------------------------------------------------------------

def qcow2(virtual_size: int = 64 * MiB, *, backing_file: str | None = None,
          data_file: str | None = None, version: int = 3) -> bytes:
    """A qcow2 (64 KiB clusters): header, refcount table and block, L1 table, no data.

    ``backing_file`` names a backing file (its offset in the header makes it one);
    ``data_file`` sets the external-data-file incompatible feature and its header extension.
    """
    cluster_bits = 16
    cluster = 1 << cluster_bits
    l2_covers = cluster * (cluster // 8)
    l1_size = max(1, -(-virtual_size // l2_covers))
    refcount_table, refcount_block, l1_table = cluster, 2 * cluster, 3 * cluster
    clusters = 4
    incompatible = 0
    extensions = b""
    if data_file is not None:
        incompatible |= 1 << 2  # external data file
        name = data_file.encode()
        extensions += struct.pack(">II", 0x44415441, len(name)) + _pad8(name)
    extensions += struct.pack(">II", 0, 0)  # end of the header extensions
    header_length = 104 if version == 3 else 72
    backing = backing_file.encode() if backing_file else b""
    backing_offset = header_length + len(extensions) if backing else 0
    header = struct.pack(
        ">4sIQIIQIIQQIIQ", b"QFI\xfb", version, backing_offset, len(backing), cluster_bits,
        virtual_size, 0, l1_size, l1_table, refcount_table, 1, 0, 0,
    )
    if version == 3:
        header += struct.pack(">QQQII", incompatible, 0, 0, 4, header_length)
    image = bytearray(clusters * cluster)
    image[:len(header)] = header
    if version == 3:
        image[header_length:header_length + len(extensions)] = extensions
    image[backing_offset:backing_offset + len(backing)] = backing
    image[refcount_table:refcount_table + 8] = struct.pack(">Q", refcount_block)
    for n in range(clusters):  # 16-bit refcounts: every cluster used once
        image[refcount_block + 2 * n:refcount_block + 2 * n + 2] = struct.pack(">H", 1)
    return bytes(image)


def _pad8(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 8)


# -- vmdk --------------------------------------------------------------------------------------

_VMDK_GRAIN = 128  # sectors (64 KiB)
_VMDK_GTES = 512  # grain table entries per grain table
_VMDK_DESCRIPTOR_SECTORS = 20
_GD_AT_END = 0xFFFFFFFFFFFFFFFF


def vmdk_descriptor(create_type: str, extent: str, *, sectors: int) -> str:
    return (
        "# Disk DescriptorFile\n"
        "version=1\n"
        "CID=7e5b80a7\n"
        "parentCID=ffffffff\n"
        f'createType="{create_type}"\n'
        "\n"
        "# Extent description\n"
        f"{extent}\n"
        "\n"
        "# The Disk Data Base\n"
        "#DDB\n"
        "\n"
        'ddb.virtualHWVersion = "4"\n'
        f'ddb.geometry.cylinders = "{max(1, sectors // (16 * 63))}"\n'
        'ddb.geometry.heads = "16"\n'
        'ddb.geometry.sectors = "63"\n'
        'ddb.adapterType = "ide"\n'
    )


def vmdk_sparse(virtual_size: int = 64 * MiB, *, stream_optimized: bool = False,
                extent_file: str = "disk.vmdk") -> bytes:
    """A hosted sparse extent vmdk: ``monolithicSparse`` (version 1, grain directory after
    the descriptor) or ``streamOptimized`` (version 3, compressed, markers, the grain
    directory found through the footer at the end). ``extent_file`` is the name its
    descriptor gives its one extent (a path there is what makes a vmdk unsafe)."""
    sectors = virtual_size // SECTOR
    create_type = "streamOptimized" if stream_optimized else "monolithicSparse"
    descriptor = vmdk_descriptor(create_type, f'RW {sectors} SPARSE "{extent_file}"',
                                 sectors=sectors).encode()
    assert len(descriptor) <= _VMDK_DESCRIPTOR_SECTORS * SECTOR
    gd_entries = -(-sectors // (_VMDK_GRAIN * _VMDK_GTES))
    gd_sectors = -(-gd_entries * 4 // SECTOR)
    overhead = _VMDK_GRAIN  # header, descriptor, grain directory: one grain
    if stream_optimized:
        # header, descriptor, [grain directory marker, directory] after the overhead,
        # footer marker, footer, end-of-stream marker
        gd_offset = overhead + 1
        header = _vmdk_header(3, 0x30001, sectors, _GD_AT_END, overhead, compress=1)
        footer = _vmdk_header(3, 0x30001, sectors, gd_offset, overhead, compress=1)
        image = bytearray(overhead * SECTOR)
        image[:SECTOR] = header
        image[SECTOR:SECTOR + len(descriptor)] = descriptor
        image += _vmdk_marker(gd_sectors, 2)  # grain directory marker
        image += bytes(gd_sectors * SECTOR)  # the directory: no grain table allocated
        image += _vmdk_marker(1, 3)  # footer marker
        image += footer
        image += _vmdk_marker(0, 0)  # end of stream
        return bytes(image)
    gd_offset = 1 + _VMDK_DESCRIPTOR_SECTORS
    header = _vmdk_header(1, 0x1, sectors, gd_offset, overhead, compress=0)
    image = bytearray(overhead * SECTOR)
    image[:SECTOR] = header
    image[SECTOR:SECTOR + len(descriptor)] = descriptor
    return bytes(image)


def _vmdk_header(version: int, flags: int, sectors: int, gd_offset: int, overhead: int, *,
                 compress: int) -> bytes:
    header = struct.pack(
        "<4sIIQQQQIQQQBccccH", b"KDMV", version, flags, sectors, _VMDK_GRAIN, 1,
        _VMDK_DESCRIPTOR_SECTORS, _VMDK_GTES, 0, gd_offset, overhead, 0, b"\n", b" ", b"\r",
        b"\n", compress,
    )
    return header + bytes(SECTOR - len(header))


def _vmdk_marker(value: int, marker_type: int) -> bytes:
    return struct.pack("<QII", value, 0, marker_type) + bytes(SECTOR - 16)


def vmdk_flat_descriptor(virtual_size: int = 64 * MiB) -> bytes:
    """A text-only vmdk descriptor (``monolithicFlat``) whose data is another file."""
    sectors = virtual_size // SECTOR
    return vmdk_descriptor("monolithicFlat", f'RW {sectors} FLAT "disk-flat.vmdk" 0',
                           sectors=sectors).encode()


# -- vhd ---------------------------------------------------------------------------------------

def vhd(virtual_size: int = 64 * MiB) -> bytes:
    """A dynamic VHD: footer copy, dynamic header, block allocation table (all free),
    footer; created as qemu does ("qem2"), so the size is the footer's, not its CHS."""
    block = 2 * MiB
    entries = -(-virtual_size // block)
    bat_offset = 3 * SECTOR
    bat = b"\xff" * (entries * 4)
    bat += b"\0" * (-len(bat) % SECTOR)
    cylinders, heads, sectors = _chs(virtual_size // SECTOR)
    footer = bytearray(struct.pack(
        ">8sIIQI4sI4sQQHBBII16sB", b"conectix", 2, 0x00010000, SECTOR, 0, b"qem2",
        0x00050003, b"Wi2k", virtual_size, virtual_size, cylinders, heads, sectors, 3, 0,
        uuid.UUID(int=1).bytes, 0,
    ))
    footer += bytes(SECTOR - len(footer))
    footer[64:68] = struct.pack(">I", _ones_complement(footer))
    dynamic = bytearray(struct.pack(
        ">8sQQIIII16sI", b"cxsparse", _GD_AT_END, bat_offset, 0x00010000, entries, block, 0,
        bytes(16), 0,
    ))
    dynamic += bytes(1024 - len(dynamic))
    dynamic[36:40] = struct.pack(">I", _ones_complement(dynamic))
    return bytes(footer) + bytes(dynamic) + bat + bytes(footer)


def _ones_complement(data: bytes | bytearray) -> int:
    return ~sum(data) & 0xFFFFFFFF


def _chs(total_sectors: int) -> tuple[int, int, int]:
    """The VHD specification's geometry for a disk of ``total_sectors``."""
    total = min(total_sectors, 65535 * 16 * 255)
    if total >= 65535 * 16 * 63:
        spt, heads = 255, 16
        cth = total // spt
    else:
        spt = 17
        cth = total // spt
        heads = max((cth + 1023) // 1024, 4)
        if cth >= heads * 1024 or heads > 16:
            spt, heads = 31, 16
            cth = total // spt
        if cth >= heads * 1024:
            spt, heads = 63, 16
            cth = total // spt
    return cth // heads, heads, spt


# -- vhdx --------------------------------------------------------------------------------------

_VHDX_METADATA_REGION = "8B7CA206-4790-4B9A-B8FE-575F050F886E"
_VHDX_BAT_REGION = "2DC27766-F623-4200-9D64-115E9BFD4A08"
_VHDX_FILE_PARAMETERS = "CAA16737-FA36-4D43-B3B6-33F0AA44E76B"
_VHDX_VIRTUAL_DISK_SIZE = "2FA54224-CD1B-4876-B211-5DBED83BF4B8"
_VHDX_PAGE83 = "BECA12AB-B2E6-4523-93EF-C309E000C746"
_VHDX_LOGICAL_SECTOR = "8141BF1D-A96F-4709-BA47-F233A8FAAB5F"
_VHDX_PHYSICAL_SECTOR = "CDA348C7-445D-4471-9CC9-E9885251C556"


def vhdx(virtual_size: int = 64 * MiB) -> bytes:
    """A dynamic VHDX: file identifier, two headers, two region tables (BAT and metadata
    regions), a 1 MiB log area, the metadata (block size 32 MiB, 512-byte sectors, the
    virtual disk size) and an empty BAT; every checksum a CRC-32C."""
    block = 32 * MiB
    log_offset, log_length = 1 * MiB, 1 * MiB
    metadata_offset, bat_offset = 2 * MiB, 3 * MiB
    image = bytearray(4 * MiB)
    image[:8] = b"vhdxfile"
    creator = "streamd tests".encode("utf-16-le")
    image[8:8 + len(creator)] = creator
    for n, offset in enumerate((64 * KiB, 128 * KiB)):
        header = bytearray(4 * KiB)
        struct.pack_into("<4sIQ16s16s16sHHIQ", header, 0, b"head", 0, n + 1,
                         uuid.UUID(int=2).bytes_le, uuid.UUID(int=3).bytes_le, bytes(16), 0,
                         1, log_length, log_offset)
        struct.pack_into("<I", header, 4, crc32c(header))
        image[offset:offset + len(header)] = header
    regions = bytearray(64 * KiB)
    struct.pack_into("<4sIII", regions, 0, b"regi", 0, 2, 0)
    struct.pack_into("<16sQII", regions, 16, _guid(_VHDX_BAT_REGION), bat_offset, 1 * MiB, 1)
    struct.pack_into("<16sQII", regions, 48, _guid(_VHDX_METADATA_REGION), metadata_offset,
                     1 * MiB, 1)
    struct.pack_into("<I", regions, 4, crc32c(regions))
    for offset in (192 * KiB, 256 * KiB):
        image[offset:offset + len(regions)] = regions
    items = [
        (_VHDX_FILE_PARAMETERS, struct.pack("<II", block, 0)),
        (_VHDX_VIRTUAL_DISK_SIZE, struct.pack("<Q", virtual_size)),
        (_VHDX_PAGE83, uuid.UUID(int=4).bytes_le),
        (_VHDX_LOGICAL_SECTOR, struct.pack("<I", SECTOR)),
        (_VHDX_PHYSICAL_SECTOR, struct.pack("<I", 4 * KiB)),
    ]
    table = bytearray(64 * KiB)
    struct.pack_into("<8sHH", table, 0, b"metadata", 0, len(items))
    data_at = 64 * KiB
    for n, (guid, value) in enumerate(items):
        flags = 0b110 if guid == _VHDX_VIRTUAL_DISK_SIZE else 0b100  # is_virtual_disk, required
        if guid in (_VHDX_PAGE83, _VHDX_LOGICAL_SECTOR, _VHDX_PHYSICAL_SECTOR):
            flags = 0b110
        struct.pack_into("<16sIII", table, 32 + 32 * n, _guid(guid), data_at, len(value), flags)
        image[metadata_offset + data_at:metadata_offset + data_at + len(value)] = value
        data_at += 4 * KiB
    image[metadata_offset:metadata_offset + len(table)] = table
    return bytes(image)


def _guid(text: str) -> bytes:
    return uuid.UUID(text).bytes_le


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        crc = n
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C = _crc32c_table()


def crc32c(data: bytes | bytearray) -> int:
    """CRC-32C (Castagnoli), as VHDX checksums its headers and region tables."""
    crc = 0xFFFFFFFF
    table = _CRC32C
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# -- iso, mbr/gpt ------------------------------------------------------------------------------

def iso(blocks: int = 64) -> bytes:
    """An ISO 9660 image: the system area, a primary volume descriptor (``blocks`` logical
    blocks of 2 KiB) and the descriptor set terminator."""
    block = 2 * KiB
    image = bytearray(blocks * block)
    pvd = bytearray(block)
    pvd[0:7] = b"\x01CD001\x01"
    pvd[8:40] = b"STREAMD".ljust(32)
    pvd[40:72] = b"TESTS".ljust(32)
    pvd[80:88] = struct.pack("<I", blocks) + struct.pack(">I", blocks)
    pvd[120:124] = struct.pack("<H", 1) + struct.pack(">H", 1)
    pvd[124:128] = struct.pack("<H", 1) + struct.pack(">H", 1)
    pvd[128:132] = struct.pack("<H", block) + struct.pack(">H", block)
    pvd[881] = 1
    image[16 * block:17 * block] = pvd
    image[17 * block:17 * block + 7] = b"\xffCD001\x01"
    return bytes(image)


def mbr_disk(size: int = 4 * MiB, *, partitions: bool = True, gpt: bool = False) -> bytes:
    """A raw disk with an MBR: one Linux partition, or (``gpt``) a protective MBR; or
    (``partitions=False``) a boot signature and no partition at all, which GPT/MBR
    checks refuse."""
    image = bytearray(size)
    if partitions:
        if gpt:
            entry = struct.pack("<B3BB3BII", 0, 0, 2, 0, 0xEE, 0xFF, 0xFF, 0xFF, 1,
                                size // SECTOR - 1)
        else:
            entry = struct.pack("<B3BB3BII", 0x80, 0, 33, 0, 0x83, 0xFE, 0xFF, 0xFF, 2048,
                                size // SECTOR - 2048)
        image[446:462] = entry
    image[510:512] = b"\x55\xaa"
    if gpt:
        image[SECTOR:SECTOR + 8] = b"EFI PART"
    return bytes(image)


# -- the cases ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """One upload: ``data`` as ``disk_format`` (container ``bare``); ``accepted`` by
    Glance's rules, then with ``virtual_size``."""

    name: str
    disk_format: str
    data: bytes
    accepted: bool
    virtual_size: int | None = None


def cases() -> list[Case]:
    """The cases of the issue (and a few more), in a stable order."""
    size = 64 * MiB
    raw = b"streamd raw disk " * 4096
    return [
        Case("qcow2", "qcow2", qcow2(size), True, size),
        Case("qcow2_backing_file", "qcow2", qcow2(size, backing_file="/etc/passwd"), False),
        Case("qcow2_data_file", "qcow2", qcow2(size, data_file="/etc/passwd"), False),
        Case("raw_declared_qcow2", "qcow2", raw, False),
        Case("qcow2_declared_vmdk", "vmdk", qcow2(size), False),
        Case("qcow2_declared_raw", "raw", qcow2(size), True, len(qcow2(size))),
        Case("qcow2_backing_file_declared_raw", "raw", qcow2(size, backing_file="/etc/passwd"),
             False),
        Case("vmdk_absolute_extent", "vmdk", vmdk_sparse(size, extent_file="/etc/shadow"),
             False),
        Case("vmdk_flat_descriptor", "vmdk", vmdk_flat_descriptor(size), False),
        Case("vmdk_monolithic_sparse", "vmdk", vmdk_sparse(size), True, size),
        Case("vmdk_stream_optimized", "vmdk", vmdk_sparse(size, stream_optimized=True), True,
             size),
        Case("vhd", "vhd", vhd(size), True, size),
        Case("vhdx", "vhdx", vhdx(size), True, size),
        Case("iso", "iso", iso(64), True, 64 * 2 * KiB),
        Case("raw", "raw", raw, True, len(raw)),
        Case("gpt_declared_raw", "raw", mbr_disk(gpt=True), True, 4 * MiB),
        Case("mbr_without_partitions_declared_raw", "raw", mbr_disk(partitions=False), False),
        Case("raw_declared_ami", "ami", raw, True),
    ]
