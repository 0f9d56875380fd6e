"""Format inspection in the upload pipeline: what it finds whatever the chunking, and a
refusal that leaves nothing in the store; Glance's rules on what it found."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from streamd.config import Settings
from streamd.io import BytesSource, MemoryStore, store_stream
from streamd.io.inspection import DiskInspection, DiskInspector
from streamd.service import disk_formats
from streamd.units import KiB, MiB
from tests import disk_images

CASES = disk_images.cases()


def inspect(data: bytes, chunk: int) -> DiskInspection:
    inspector = DiskInspector()
    for start in range(0, len(data), chunk):
        inspector.eat(memoryview(data)[start:start + chunk])
    return inspector.finish()


@pytest.mark.parametrize("chunk", [4 * KiB + 7, 64 * KiB, 1 * MiB])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_rules_judge_what_the_inspector_found(case: disk_images.Case, chunk: int) -> None:
    found = inspect(case.data, chunk)
    assert found.actual_size == len(case.data) or found.format is None
    if case.accepted:
        size = disk_formats.virtual_size(Settings(), case.disk_format, "bare", found)
        assert size == case.virtual_size
    else:
        with pytest.raises(disk_formats.ImageRefused) as refused:
            disk_formats.virtual_size(Settings(), case.disk_format, "bare", found)
        assert refused.value.status == 415
        assert case.disk_format in refused.value.message


def test_what_is_found() -> None:
    qcow2 = inspect(disk_images.qcow2(3 * MiB), 1 * MiB)
    assert (qcow2.format, qcow2.virtual_size, qcow2.safe) == ("qcow2", 3 * MiB, True)
    backing = inspect(disk_images.qcow2(backing_file="/etc/passwd"), 1 * MiB)
    assert backing.failures == {"backing_file": "Image has a backing file"}
    assert not backing.safe
    flat = inspect(disk_images.vmdk_flat_descriptor(), 1 * MiB)
    assert (flat.format, flat.subformat) == ("vmdk", "monolithicflat")
    assert flat.failures == {"descriptor": "Unsupported subformat"}
    iso = inspect(disk_images.iso(64), 1 * MiB)
    assert (iso.format, iso.virtual_size) == ("iso", 128 * KiB)
    assert DiskInspection.from_json(backing.to_json()) == backing


def test_not_bare_is_not_inspected_and_formats_need_not_match() -> None:
    found = inspect(b"a tarball, say" * 100, 1 * MiB)
    assert disk_formats.acceptor(Settings(), "qcow2", "ova") is None
    assert disk_formats.virtual_size(Settings(), "qcow2", "ova", found) is None
    lax = Settings(require_image_format_match=False)
    assert disk_formats.virtual_size(lax, "qcow2", "bare", found) is None
    unsafe = inspect(disk_images.qcow2(backing_file="x"), 1 * MiB)
    with pytest.raises(disk_formats.ImageRefused):  # unsafe is refused either way
        disk_formats.virtual_size(lax, "qcow2", "bare", unsafe)
    assert disk_formats.acceptor(Settings(inspect_image_data=False), "qcow2", "bare") is None


def test_vmdk_allowed_types_narrows_the_subformats() -> None:
    found = inspect(disk_images.vmdk_sparse(stream_optimized=True), 64 * KiB)
    assert found.subformat == "streamoptimized"
    only_sparse = Settings(vmdk_allowed_types=("monolithicSparse",))
    with pytest.raises(disk_formats.ImageRefused, match="vmdk_allowed_types"):
        disk_formats.virtual_size(only_sparse, "vmdk", "bare", found)
    assert disk_formats.virtual_size(Settings(), "vmdk", "bare", found) == 64 * MiB


async def test_a_refusal_fails_the_transfer_before_the_store_commits() -> None:
    store = MemoryStore()
    data = disk_images.qcow2(backing_file="/etc/passwd")
    accept = disk_formats.acceptor(Settings(), "qcow2", "bare")
    with pytest.raises(disk_formats.ImageRefused, match="backing_file"):
        await store_stream(BytesSource(data, max_read=5000), store, key="img",
                           chunk_size=64 * KiB, queue_depth=2, accept=accept)
    assert store.objects == {}
    valid = disk_images.qcow2()
    result = await store_stream(BytesSource(valid), store, key="img", chunk_size=64 * KiB,
                                queue_depth=2, accept=accept)
    assert result.inspection is not None and result.inspection.virtual_size == 64 * MiB
    assert store.objects["img"] == valid


async def test_without_accept_nothing_is_inspected() -> None:
    result = await store_stream(BytesSource(disk_images.qcow2()), MemoryStore(), key="img",
                                chunk_size=64 * KiB)
    assert result.inspection is None


QEMU_FORMAT = {"vhd": "vpc", "iso": "raw", "gpt": "raw"}  # qemu's names; it reads both as raw


@pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img is not installed")
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_qemu_img_reads_the_crafted_images_alike(case: disk_images.Case, tmp_path: Path) -> None:
    """The crafted images are real ones: qemu-img sees the format and virtual size the
    inspector does (a flat descriptor's extent is another file: qemu-img cannot open it)."""
    path = tmp_path / "disk"
    path.write_bytes(case.data)
    info = subprocess.run(["qemu-img", "info", "--output=json", str(path)],
                          capture_output=True, text=True)
    found = inspect(case.data, 1 * MiB)
    if case.name == "vmdk_flat_descriptor":
        assert info.returncode != 0 and "disk-flat.vmdk" in info.stderr
        return
    assert info.returncode == 0, info.stderr
    qemu = json.loads(info.stdout)
    assert found.format is not None
    assert qemu["format"] == QEMU_FORMAT.get(found.format, found.format)
    assert qemu["virtual-size"] == (found.virtual_size or len(case.data))
    if "backing_file" in found.failures:
        assert qemu["backing-filename"] == "/etc/passwd"
    if "data_file" in found.failures:
        assert qemu["format-specific"]["data"]["data-file"] == "/etc/passwd"
