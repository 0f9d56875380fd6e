"""The transfer client's figures (P2.2, ``--transfer``): streamd-transfer against the clients a
hypervisor host has today, on the same streamd (file store), in one run.

- **sparse**: an image of ``virtual`` bytes holding ``data`` bytes (runs of 16 MiB spread
  evenly, the rest holes). Download it with streamd-transfer (4 connections; checked as its
  default says, and once with ``--verify digest``: the image's sha512), with glanceclient's
  ``image-download --file`` (md5 checked while streaming) and with ``curl -o``: wall seconds
  and the result's allocated bytes. Upload the same file with streamd-transfer (parts, zero
  runs declared, then the import) and with glanceclient's ``image-upload``.
- **dense**: a fully random image of ``dense`` bytes downloaded with 1, 2 and 4 connections on
  loopback (MiB/s; the delayed link of the issue needs ``tc netem``, which this machine's
  kernel may lack: then a note says so and those figures are not made).
- **replicate**: ``images`` images of mixed sizes made on the Glance peer, replicated to the
  streamd: wall seconds and bytes moved; a second run must move 0 bytes. Then one of them
  downloaded from Glance and uploaded back to it by streamd-transfer: the fallback to plain
  Image API calls, shown on Glance itself.

Each client runs as its own process, as an operator runs it; the figures are wall time of that
process (start-up included: it is part of what a user waits for).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.delayline import NS_ADDR, DelayedLink, connect_time
from bench.figures import Figures
from bench.goals import CURL, GLANCECLIENT, TRANSFER
from bench.targets import StreamdServer

MiB = 1024 * 1024
GiB = 1024 * MiB
RUN = 16 * MiB  # one data run of the sparse image
TIMEOUT = 1800.0  # seconds for one client command
REPLICATION_SIZES = (1 * MiB, 4 * MiB, 16 * MiB, 64 * MiB)  # cycled over the images
# who the clients are on the keystone-less Glance peer and on streamd (noauth)
IDENTITY = {"X-Project-Id": "bench-transfer", "X-User-Id": "bench-transfer-user",
            "X-Roles": "admin,member,reader", "X-Identity-Status": "Confirmed"}


def allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


def make_sparse(path: Path, virtual: int, data: int) -> int:
    """``data`` bytes of random runs spread over ``virtual`` bytes of holes; the bytes of
    data written (whole runs)."""
    runs = max(1, data // RUN)
    stride = virtual // runs
    block = bytearray(os.urandom(RUN))
    with open(path, "wb") as f:
        for i in range(runs):
            block[:8] = i.to_bytes(8, "big")  # each run its own bytes
            f.seek(i * stride)
            f.write(block)
        f.truncate(virtual)
    return runs * RUN


def make_dense(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(64 * MiB, left)
            f.write(os.urandom(n))
            left -= n


@dataclass
class TransferGroup:
    tmp: Path
    python: str
    glance_url: str | None
    virtual: int = 10 * GiB
    data: int = 1 * GiB
    dense: int = 2 * GiB
    images: int = 50
    delay: float = 0.010  # each way: a 20 ms round trip
    delayed: bool = True  # the delayed-link figures (root, ip, /dev/net/tun needed)
    notes: list[str] = field(default_factory=list)
    server: StreamdServer | None = None
    sparse_path: Path | None = None
    dense_path: Path | None = None
    sparse_id: str | None = None
    dense_id: str | None = None

    @property
    def bin(self) -> Path:
        return Path(self.python).parent

    def start(self) -> None:
        work = self.tmp / "transfer"
        work.mkdir(parents=True, exist_ok=True)
        self.server = StreamdServer("streamd-transfer-server", work / "data", python=self.python)
        self.server.start()
        self.sparse_path = work / "sparse.raw"
        self.data = make_sparse(self.sparse_path, self.virtual, self.data)
        self.dense_path = work / "dense.raw"
        make_dense(self.dense_path, self.dense)
        self.sparse_id = self._upload_with_transfer(self.sparse_path, "bench-sparse")[0]
        self.dense_id = self._upload_with_transfer(self.dense_path, "bench-dense")[0]
        self.notes.append(
            f"transfer group: sparse image {self.virtual / GiB:.0f} GiB virtual, "
            f"{self.data / GiB:.2f} GiB of data in runs of {RUN // MiB} MiB; dense image "
            f"{self.dense / GiB:.0f} GiB; streamd-transfer with 4 connections unless named; "
            "wall time of each client's process")
        if self.delayed and not delay_line_possible():
            self.delayed = False
            self.notes.append("transfer group: no delayed link (it needs root, iproute2 and "
                              "/dev/net/tun): its figures were not made")
        elif self.delayed:
            self.notes.append(
                f"transfer group: the delayed link is a user-space delay line of "
                f"{self.delay * 1000:.0f} ms each way between two TUN devices, the server in "
                f"its own network namespace (bench/delayline.py)"
                + ("" if netem_available() else "; this kernel has no netem qdisc"))

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    # -- the clients ---------------------------------------------------------------------

    def _transfer(self, *args: str) -> tuple[float, list[dict[str, Any]]]:
        assert self.server is not None
        argv = [self.python, "-m", "streamd.transfer.cli", "--url", self.server.url, "--json",
                *(f"-H{k}:{v}" for k, v in IDENTITY.items()), *args]
        return _timed_json(argv)

    def _glance(self, *args: str) -> float:
        assert self.server is not None
        argv = [str(self.bin / "glance"), "--os-image-url", self.server.url,
                "--os-auth-token", "bench", *args]
        t0 = time.monotonic()
        _run(argv)
        return time.monotonic() - t0

    def _upload_with_transfer(self, path: Path, name: str) -> tuple[str, float]:
        seconds, events = self._transfer("upload", str(path), "--name", name)
        image_id = next(e["image_id"] for e in events if e["event"] == "created")
        return image_id, seconds

    # -- one run ---------------------------------------------------------------------------

    def run(self, run_no: int, figures: Figures) -> None:
        self.run_sparse(figures)
        print("  transfer: sparse done", flush=True)
        self.run_dense(figures)
        print("  transfer: dense done", flush=True)
        if self.delayed:
            self.run_delayed(figures)
            print("  transfer: delayed link done", flush=True)
        if self.glance_url:
            self.run_replication(run_no, figures)
            print("  transfer: replication done", flush=True)

    def run_sparse(self, figures: Figures) -> None:
        assert self.sparse_path is not None and self.sparse_id is not None
        out = self.sparse_path.with_name("sparse.out")
        data_mib = self.data / MiB

        def result(target: str, name: str, seconds: float, note: str = "") -> None:
            figures.add(target, name, "s", seconds, note=note)
            figures.add(target, f"{name}.disk", "x data", allocated(out) / MiB / data_mib)
            out.unlink()

        for mode, name in (("auto", "sparse.download"),
                           ("digest", "sparse.download.verify-digest")):
            seconds, events = self._transfer("download", "--verify", mode, self.sparse_id,
                                             str(out))
            digest = next(e["digest"] for e in events if e["event"] == "verified")
            result(TRANSFER, name, seconds, f"checked against {digest}")
        result(GLANCECLIENT, "sparse.download",
               self._glance("image-download", "--file", str(out), self.sparse_id),
               "glance image-download --file (it checks the digest while streaming)")
        assert self.server is not None
        t0 = time.monotonic()
        _run(["curl", "-sSf", "-o", str(out), *(f"-H{k}: {v}" for k, v in IDENTITY.items()),
              f"{self.server.url}/v2/images/{self.sparse_id}/file"])
        result(CURL, "sparse.download", time.monotonic() - t0, "curl -o (nothing checked)")

        image_id, seconds = self._upload_with_transfer(self.sparse_path, "bench-sparse-up")
        figures.add(TRANSFER, "sparse.upload", "s", seconds)
        _delete_image(self.server.url, image_id)
        image_id = _create_image(self.server.url, "bench-sparse-glanceclient")
        figures.add(GLANCECLIENT, "sparse.upload", "s",
                    self._glance("image-upload", "--file", str(self.sparse_path), image_id))
        _delete_image(self.server.url, image_id)

    def run_dense(self, figures: Figures) -> None:
        assert self.dense_path is not None and self.dense_id is not None
        out = self.dense_path.with_name("dense.out")
        for conns in (1, 2, 4):
            seconds, _ = self._transfer("-c", str(conns), "download", self.dense_id, str(out))
            figures.add(TRANSFER, f"dense.download.c{conns}", "MiB/s",
                        self.dense / MiB / seconds)
            out.unlink()

    def run_delayed(self, figures: Figures) -> None:
        """The dense image over a link with ``delay`` each way: 1, 2, 4 connections."""
        assert self.dense_path is not None
        out = self.dense_path.with_name("dense-delayed.out")
        with DelayedLink(self.delay) as link:
            server = StreamdServer("streamd-delayed", self.tmp / "transfer" / "delayed-data",
                                   env={"STREAMD_NOAUTH_ALLOW_REMOTE": "true"},
                                   python=self.python, host=NS_ADDR,
                                   argv_prefix=tuple(link.prefix()))
            server.port = 9292  # its own namespace: nothing else listens there
            server.url = f"http://{NS_ADDR}:{server.port}"
            server.start()
            try:
                figures.add(TRANSFER, "delayed.round_trip", "ms",
                            connect_time(NS_ADDR, server.port) * 1000)
                base = [self.python, "-m", "streamd.transfer.cli", "--url", server.url,
                        "--json", *(f"-H{k}:{v}" for k, v in IDENTITY.items())]
                _, events = _timed_json([*base, "upload", str(self.dense_path), "--name",
                                         "bench-dense-delayed"])
                image_id = next(e["image_id"] for e in events if e["event"] == "created")
                for conns in (1, 2, 4):
                    seconds, _ = _timed_json([*base, "-c", str(conns), "download", image_id,
                                              str(out)])
                    figures.add(TRANSFER, f"delayed.download.c{conns}", "MiB/s",
                                self.dense / MiB / seconds)
                    out.unlink()
            finally:
                server.stop()
                shutil.rmtree(self.tmp / "transfer" / "delayed-data", ignore_errors=True)

    def run_replication(self, run_no: int, figures: Figures) -> None:
        assert self.glance_url is not None and self.server is not None
        ids = [_create_image(self.glance_url, f"bench-rep-{run_no}-{i}",
                             os.urandom(REPLICATION_SIZES[i % len(REPLICATION_SIZES)]))
               for i in range(self.images)]
        total = sum(REPLICATION_SIZES[i % len(REPLICATION_SIZES)] for i in range(self.images))
        try:
            picks = [f"--image={i}" for i in ids]
            argv = [self.python, "-m", "streamd.transfer.cli", "--json",
                    *(f"-H{k}:{v}" for k, v in IDENTITY.items()),
                    "replicate", self.glance_url, self.server.url, *picks]
            seconds, events = _timed_json(argv)
            moved = sum(e.get("bytes_moved", 0) for e in events if e["event"] == "stats")
            figures.add(TRANSFER, "replicate.first", "s", seconds,
                        note=f"{self.images} images, {total / MiB:.0f} MiB, Glance -> streamd")
            figures.add(TRANSFER, "replicate.first.moved", "x data", moved / total)
            seconds, events = _timed_json(argv)
            moved = sum(e.get("bytes_moved", 0) for e in events if e["event"] == "stats")
            figures.add(TRANSFER, "replicate.again", "s", seconds)
            figures.add(TRANSFER, "replicate.again.moved", "bytes", float(moved))
            biggest = max(range(self.images),
                          key=lambda i: REPLICATION_SIZES[i % len(REPLICATION_SIZES)])
            self.run_against_glance(ids[biggest],
                                    REPLICATION_SIZES[biggest % len(REPLICATION_SIZES)], figures)
        finally:
            for image_id in ids:
                _delete_image(self.glance_url, image_id)
                _delete_image(self.server.url, image_id)

    def run_against_glance(self, image_id: str, size: int, figures: Figures) -> None:
        """streamd-transfer against Glance itself: no extensions, so one stream of plain
        Image API calls each way, checked against Glance's sha512."""
        assert self.glance_url is not None
        out = self.tmp / "transfer" / "from-glance.raw"
        base = [self.python, "-m", "streamd.transfer.cli", "--url", self.glance_url, "--json",
                *(f"-H{k}:{v}" for k, v in IDENTITY.items())]
        seconds, events = _timed_json([*base, "download", image_id, str(out)])
        start = next(e for e in events if e["event"] == "download")
        checked = next(e["digest"] for e in events if e["event"] == "verified")
        figures.add(TRANSFER, "glance.download", "MiB/s", size / MiB / seconds,
                    note=f"extensions {start['extensions']}, connections "
                         f"{start['connections']}, checked against {checked}")
        seconds, events = _timed_json([*base, "upload", str(out), "--name", "bench-to-glance"])
        created = next(e["image_id"] for e in events if e["event"] == "created")
        checked = next(e["digest"] for e in events if e["event"] == "verified")
        figures.add(TRANSFER, "glance.upload", "MiB/s", size / MiB / seconds,
                    note=f"checked against {checked}")
        _delete_image(self.glance_url, created)
        out.unlink()

def _request(url: str, method: str, data: bytes | None = None,
             content_type: str | None = None, timeout: float = 600) -> bytes:
    headers = {**IDENTITY, **({"Content-Type": content_type} if content_type else {})}
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return bytes(r.read())


def _create_image(base: str, name: str, data: bytes | None = None) -> str:
    """A raw image on the server at ``base`` (streamd or Glance), with ``data`` if given."""
    body = json.dumps({"name": name, "disk_format": "raw", "container_format": "bare"})
    image_id = str(json.loads(_request(f"{base}/v2/images", "POST", body.encode(),
                                       "application/json"))["id"])
    if data is not None:
        _request(f"{base}/v2/images/{image_id}/file", "PUT", data, "application/octet-stream")
    return image_id


def _delete_image(base: str, image_id: str) -> None:
    """Gone, or already gone: cleanup must not hide the run's own error."""
    try:
        _request(f"{base}/v2/images/{image_id}", "DELETE", timeout=60)
    except OSError:
        pass


def _run(argv: list[str]) -> subprocess.CompletedProcess[bytes]:
    done = subprocess.run(argv, capture_output=True, timeout=TIMEOUT)
    if done.returncode != 0:
        raise RuntimeError(f"{os.path.basename(argv[0])} {' '.join(argv[1:4])} ... exited "
                           f"{done.returncode}: {done.stderr.decode(errors='replace')[-600:]}"
                           f"{done.stdout.decode(errors='replace')[-600:]}")
    return done


def _timed_json(argv: list[str]) -> tuple[float, list[dict[str, Any]]]:
    t0 = time.monotonic()
    done = _run(argv)
    seconds = time.monotonic() - t0
    events = [json.loads(line) for line in done.stdout.decode().splitlines()
              if line.startswith("{")]
    return seconds, events


def delay_line_possible() -> bool:
    return (os.geteuid() == 0 and shutil.which("ip") is not None
            and os.path.exists("/dev/net/tun"))


def netem_available() -> bool:
    """Can this kernel delay packets (``tc qdisc … netem``)? Tried on a throwaway veth."""
    if shutil.which("ip") is None or shutil.which("tc") is None or os.geteuid() != 0:
        return False
    name = f"sdnet{os.getpid() % 10000}"
    if subprocess.run(["ip", "link", "add", name, "type", "veth", "peer", "name", name + "p"],
                      capture_output=True).returncode != 0:
        return False
    try:
        return subprocess.run(["tc", "qdisc", "add", "dev", name, "root", "netem", "delay",
                               "10ms"], capture_output=True).returncode == 0
    finally:
        subprocess.run(["ip", "link", "del", name], capture_output=True)
