"""JSON in and out for the metadata routes: parse a request body, write a response."""

from __future__ import annotations

import json
from typing import Any

from quart import Response, request

from streamd.errors import BadRequest


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None
                  ) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json",
                    headers=headers)


def no_content() -> Response:
    response = Response(b"", status=204)
    del response.headers["Content-Type"]
    return response


async def json_body(expected: str = "a JSON document") -> Any:
    return parse_json(await request.get_data(as_text=False), expected)


def parse_json(data: bytes, expected: str = "a JSON document") -> Any:
    """The request body as JSON; 400 with the parser's position when it is not JSON."""
    if not data.strip():
        raise BadRequest(f"Body expected in request: send {expected}.")
    try:
        return json.loads(data)
    except UnicodeDecodeError:
        raise BadRequest("Malformed JSON in request body: it is not UTF-8 text.") from None
    except json.JSONDecodeError as e:
        raise BadRequest(f"Malformed JSON in request body: {e.msg} at line {e.lineno} "
                         f"column {e.colno}.") from None
