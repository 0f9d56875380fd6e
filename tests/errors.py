"""Reading streamd's JSON error bodies in tests."""

from __future__ import annotations

from typing import Any

import httpx


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The ``{"message", "code", "title"}`` of an error response, checked for shape."""
    assert response.headers["content-type"] == "application/json", response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"message", "code", "title"}, error
    assert error["code"] == response.status_code
    assert error["message"]
    return error
