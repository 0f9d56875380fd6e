"""JSON in and out for the metadata routes: parse a request body, write a response.

Every JSON body is checked here, once, before any use case sees it: nested at most
``MAX_JSON_DEPTH`` deep (deeper documents exhaust Python's recursion in the parser, the schema
validator or the patch library), and no string or key holds a NUL or a lone surrogate
(``"\\ud800"`` is valid JSON but has no UTF-8 form; PostgreSQL refuses NUL in text, SQLite
stores it, so refusing both everywhere keeps every database alike).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlencode

from quart import Response, request

from streamd.errors import BadRequest

# Glance's deepest documents (metadefs namespaces: objects > properties > items > enum) are
# under 10 levels; 32 leaves room and stays far below the interpreter's recursion limit.
MAX_JSON_DEPTH = 32
# NUL and the UTF-16 surrogate range: text no database column (or UTF-8) can hold
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None
                  ) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json",
                    headers=headers)


def path_segment(text: str) -> str:
    """``text`` as one segment of a URL path: ``/``, ``?``, ``#``, ``%`` … encoded too."""
    return quote(text, safe="")


def listing_body(path: str, key: str, items: list[Any], next_marker: str | None,
                 params: Sequence[tuple[str, str]], schema: str) -> dict[str, Any]:
    """A listing page (images, tasks, metadefs namespaces) with its ``first`` link and, when
    more follow, ``next``.

    Both links repeat the request's own parameters (filters, sorts, limit) so that a client
    following ``next`` keeps getting the same listing; only the marker changes.
    """
    kept = [(k, v) for k, v in params if k != "marker"]
    body: dict[str, Any] = {
        key: items,
        "first": f"{path}?{urlencode(kept)}" if kept else path,
        "schema": schema,
    }
    if next_marker is not None:
        body["next"] = f"{path}?{urlencode([*kept, ('marker', next_marker)])}"
    return body


def no_content() -> Response:
    response = Response(b"", status=204)
    del response.headers["Content-Type"]
    return response


async def json_body(expected: str = "a JSON document") -> Any:
    return parse_json(await request.get_data(as_text=False), expected)


def parse_json(data: bytes, expected: str = "a JSON document") -> Any:
    """The request body as JSON; 400 with the parser's position when it is not JSON, and
    400 when it is too deep or holds text that cannot be stored."""
    if not data.strip():
        raise BadRequest(f"Body expected in request: send {expected}.")
    try:
        doc = json.loads(data)
    except UnicodeDecodeError:
        raise BadRequest("Malformed JSON in request body: it is not UTF-8 text.") from None
    except json.JSONDecodeError as e:
        raise BadRequest(f"Malformed JSON in request body: {e.msg} at line {e.lineno} "
                         f"column {e.colno}.") from None
    except RecursionError:
        raise _too_deep() from None
    check_json_text(doc)
    return doc


def _too_deep() -> BadRequest:
    return BadRequest(f"The JSON document is nested too deeply: at most {MAX_JSON_DEPTH} "
                      "levels of arrays and objects are accepted.")


def check_json_text(doc: Any) -> None:
    """400 if ``doc`` nests deeper than ``MAX_JSON_DEPTH`` or a string or key in it holds a
    NUL or a lone surrogate. Iterative, so that depth itself cannot exhaust the stack."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            check_text(value)
            continue
        if not isinstance(value, dict | list):
            continue
        if depth > MAX_JSON_DEPTH:
            raise _too_deep()
        if isinstance(value, dict):
            for key, item in value.items():
                check_text(key)
                stack.append((item, depth + 1))
        else:
            stack.extend((item, depth + 1) for item in value)


def check_text(text: str, what: str = "A string in the request") -> None:
    """400 if ``text`` holds a NUL character or a lone UTF-16 surrogate."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return
    char = found.group()
    kind = "a NUL character (\\u0000)" if char == "\x00" else \
        f"a lone surrogate (\\u{ord(char):04x}), which has no UTF-8 form"
    raise BadRequest(f"{what} holds {kind} at position {found.start()}: send valid "
                     "Unicode text without NUL characters.")
