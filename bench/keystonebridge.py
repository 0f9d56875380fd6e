"""A Keystone v3 token endpoint in front of Swift's tempauth, for Glance's swift driver.

glance_store 5.x (Glance 33) authenticates to Swift only with Keystone v3
(``swift_store_auth_version`` accepts nothing but ``3``), while the project's Swift
(``bench/swiftserver.py``) uses tempauth. This bridge answers the one call the driver makes,
``POST /v3/auth/tokens`` with the password method and a project scope, by asking tempauth
for ``<project>:<user>`` with that password and handing back tempauth's token as the
Keystone token (``X-Subject-Token``), with Swift's storage URL as the ``object-store``
endpoint of the catalog. Every byte of image data still goes between Glance and Swift
directly; only the token is fetched through here (once per Swift connection Glance opens).

It runs in a thread of the harness (its CPU counts as client CPU: a few milliseconds per
token).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

TOKEN_LIFETIME = dt.timedelta(hours=12)  # tempauth's tokens live 24 h by default


def _iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000000Z")


class KeystoneBridge:
    """``http://127.0.0.1:<port>/v3``: Keystone v3 passwords in, tempauth tokens out."""

    def __init__(self, tempauth_url: str) -> None:
        self.tempauth_url = tempauth_url
        self.logins = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        return f"http://127.0.0.1:{self._server.server_address[1]}/v3"

    def token_for(self, body: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        """(status, JSON body, headers) for one ``POST /v3/auth/tokens`` body."""
        try:
            user = body["auth"]["identity"]["password"]["user"]
            project = body["auth"]["scope"]["project"]
            name, password, project_name = user["name"], user["password"], project["name"]
        except (KeyError, TypeError):
            return 400, _error(400, "Bad Request", "password method with a project scope "
                               "(by name) expected"), {}
        r = httpx.get(self.tempauth_url, headers={"X-Auth-User": f"{project_name}:{name}",
                                                  "X-Auth-Key": password}, timeout=10.0)
        if r.status_code != 200:
            return 401, _error(401, "Unauthorized", f"tempauth answered {r.status_code} for "
                               f"{project_name}:{name}"), {}
        self.logins += 1
        storage_url, token = r.headers["x-storage-url"], r.headers["x-auth-token"]
        now = dt.datetime.now(dt.UTC)
        domain = {"id": "default", "name": "Default"}
        doc = {"token": {
            "methods": ["password"],
            "user": {"id": name, "name": name, "domain": domain},
            "project": {"id": project_name, "name": project_name, "domain": domain},
            "roles": [{"id": "admin", "name": "admin"}],
            "issued_at": _iso(now),
            "expires_at": _iso(now + TOKEN_LIFETIME),
            "catalog": [{
                "type": "object-store", "name": "swift", "id": "swift",
                "endpoints": [{"id": f"swift-{i}", "interface": i, "region": "RegionOne",
                               "region_id": "RegionOne", "url": storage_url}
                              for i in ("public", "internal", "admin")],
            }],
        }}
        return 201, doc, {"X-Subject-Token": token}

    def start(self) -> KeystoneBridge:
        bridge = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: dict[str, Any],
                      headers: dict[str, str] | None = None) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                if self.path.rstrip("/") != "/v3/auth/tokens":
                    self._send(404, _error(404, "Not Found", f"no {self.path} here"))
                    return
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    self._send(400, _error(400, "Bad Request", "body is not JSON"))
                    return
                try:
                    self._send(*bridge.token_for(body))
                except httpx.HTTPError as e:
                    self._send(503, _error(503, "Service Unavailable", f"tempauth: {e}"))

            def do_GET(self) -> None:  # noqa: N802
                if self.path.rstrip("/") == "/v3":  # version discovery
                    self._send(200, {"version": {
                        "id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
                        "links": [{"rel": "self", "href": bridge.url + "/"}],
                        "media-types": [{"base": "application/json",
                                         "type": "application/vnd.openstack.identity-v3+json"}],
                    }})
                else:
                    self._send(404, _error(404, "Not Found", f"no {self.path} here"))

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="keystone-bridge", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None


def _error(code: int, title: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "title": title, "message": message}}
