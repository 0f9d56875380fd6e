"""A small Keystone for tests: the two v3 calls a service makes, on a loopback port.

- ``POST /v3/auth/tokens`` (password method, project scope): 201 with the new token in
  ``X-Subject-Token`` and the token document in the body; 401 for wrong credentials.
- ``GET /v3/auth/tokens`` with ``X-Auth-Token`` (a service token) and ``X-Subject-Token``
  (the token to check): 200 with ``{"token": {...}}``, 404 when the subject token is unknown
  or expired, 401 when the service token is.

Tokens are issued with ``issue()`` and revoked with ``revoke()``; ``validations`` counts the
GETs, ``logins`` the POSTs. Errors are Keystone's ``{"error": {"code", "message", "title"}}``.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def _iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000000Z")


@dataclass
class FakeKeystone:
    # (user name, domain name) -> (password, project name, project id)
    users: dict[tuple[str, str], tuple[str, str, str]] = field(default_factory=dict)
    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    service_tokens: set[str] = field(default_factory=set)
    validations: int = 0
    logins: int = 0
    down: bool = False  # answer 503 to everything

    def issue(self, project_id: str | None, user_id: str, roles: list[str],
              expires_in: float = 3600, token: str | None = None) -> str:
        token = token or secrets.token_hex(16)
        doc: dict[str, Any] = {
            "methods": ["password"],
            "user": {"id": user_id, "name": user_id, "domain": {"id": "default",
                                                                "name": "Default"}},
            "roles": [{"id": f"role-{r}", "name": r} for r in roles],
            "issued_at": _iso(dt.datetime.now(dt.UTC)),
            "expires_at": _iso(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=expires_in)),
        }
        if project_id is not None:
            doc["project"] = {"id": project_id, "name": project_id,
                              "domain": {"id": "default", "name": "Default"}}
        self.tokens[token] = doc
        return token

    def revoke(self, token: str) -> None:
        self.tokens.pop(token, None)
        self.service_tokens.discard(token)

    def start(self) -> FakeKeystone:
        keystone = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: dict[str, Any] | None = None,
                      headers: dict[str, str] | None = None) -> None:
                payload = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)

            def _error(self, status: int, title: str, message: str) -> None:
                self._send(status, {"error": {"code": status, "title": title,
                                              "message": message}})

            def do_GET(self) -> None:  # noqa: N802
                if keystone.down:
                    return self._error(503, "Service Unavailable", "down")
                if self.path != "/v3/auth/tokens":
                    return self._error(404, "Not Found", "no such route")
                keystone.validations += 1
                if self.headers.get("X-Auth-Token") not in keystone.service_tokens:
                    return self._error(401, "Unauthorized",
                                       "The request you have made requires authentication.")
                subject = self.headers.get("X-Subject-Token", "")
                doc = keystone.tokens.get(subject)
                if doc is None or doc["expires_at"] <= _iso(dt.datetime.now(dt.UTC)):
                    return self._error(404, "Not Found",
                                       f"Could not find token: {subject[:8]}.")
                self._send(200, {"token": doc}, {"X-Subject-Token": subject})

            def do_POST(self) -> None:  # noqa: N802
                if keystone.down:
                    return self._error(503, "Service Unavailable", "down")
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                keystone.logins += 1
                try:
                    user = body["auth"]["identity"]["password"]["user"]
                    key = (user["name"], user["domain"]["name"])
                    password, project, project_id = keystone.users[key]
                    scope = body["auth"]["scope"]["project"]["name"]
                    assert user["password"] == password and scope == project
                except (KeyError, TypeError, AssertionError):
                    return self._error(401, "Unauthorized",
                                       "The request you have made requires authentication.")
                token = keystone.issue(project_id, user["name"], ["service", "admin"])
                keystone.service_tokens.add(token)
                self._send(201, {"token": keystone.tokens[token]}, {"X-Subject-Token": token})

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeKeystone:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
