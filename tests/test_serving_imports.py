"""What a serving process loads: libraries it never uses cost RSS in every server process.

``streamd serve`` on SQLite must not import the SQLAlchemy ORM (the registry uses Core
only: ~5.6 MiB), the PostgreSQL or MySQL dialects (~3.4 MiB) or ``cryptography`` (~6.7 MiB,
which oslo's format inspector needs only to decrypt a LUKS image with a passphrase). The
check runs in a fresh interpreter: this one has imported everything the suite touched.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

NOT_FOR_SERVING = ("sqlalchemy.orm", "sqlalchemy.dialects.postgresql",
                   "sqlalchemy.dialects.mysql", "cryptography")

SERVE = """
import json, sys
import streamd.cli, streamd.server  # what `streamd serve` imports
from streamd.io.inspection import DiskInspector
from streamd.registry import ImageRegistry, make_engine
from streamd.registry.schema import create_current
from tests import disk_images

engine = make_engine({url!r})
create_current(engine)
registry = ImageRegistry(engine)
image = registry.create({{"name": "x"}}, {{"k": "v"}}, ["t"])
assert registry.get(image.id) == image
luks = b"LUKS\\xba\\xbe" + (1).to_bytes(2, "big") + bytes(4096)
found = {{}}
for name, data in (("qcow2", disk_images.qcow2()), ("luks", luks), ("raw", bytes(8192))):
    inspector = DiskInspector()
    inspector.eat(data)
    found[name] = inspector.finish().format
loaded = sorted(m for m in {not_for_serving!r} if m in sys.modules)
from oslo_utils.imageutils import _luks
slots = _luks.NUM_KEY_SLOTS  # any helper but the header's type loads the real module
print(json.dumps({{"loaded": loaded, "found": found, "slots": slots,
                  "crypto_on_demand": "cryptography" in sys.modules}}))
"""


def test_serving_on_sqlite_loads_no_orm_no_other_dialect_no_cryptography(tmp_path: Path) -> None:
    code = SERVE.format(url=f"sqlite:///{tmp_path / 'r.sqlite'}",
                        not_for_serving=NOT_FOR_SERVING)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True, timeout=60).stdout
    result = json.loads(out.splitlines()[-1])
    assert result["loaded"] == []
    # the inspector still tells LUKS (and the rest) apart without cryptography …
    assert result["found"] == {"qcow2": "qcow2", "luks": "luks", "raw": "raw"}
    # … and oslo's LUKS helpers are all there when one is needed
    assert result["slots"] == 8 and result["crypto_on_demand"]
