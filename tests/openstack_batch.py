"""Run many ``openstack`` command lines in one interpreter: ``python -m tests.openstack_batch``
reads one JSON list of arguments per line on stdin and answers one JSON object per line
(``rc``, ``stdout``, ``stderr``).

Each command is python-openstackclient's own entry point (``openstackclient.shell.main``),
a new shell per command, as the ``openstack`` executable runs it; only the interpreter's
start and the imports (~1.5 s a command here) are paid once. The executable itself is
driven by tests/e2e/test_openstack_cli.py.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys

from openstackclient.shell import main


def serve() -> None:
    for line in sys.stdin:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main(json.loads(line))
            except SystemExit as exc:  # argparse's --help and usage errors
                rc = exc.code if isinstance(exc.code, int) else 1
        print(json.dumps({"rc": rc, "stdout": out.getvalue(), "stderr": err.getvalue()}),
              flush=True)


if __name__ == "__main__":
    serve()
