"""streamd answers the scripted metadefs sequence as the Glance peer did (its recording).

``tests/record_glance_metadefs.py`` holds the sequence (~100 calls, 45 of them bad) and
recorded Glance 33's answers into ``tests/glance_recordings/metadefs.json``; here the same
sequence runs against a real streamd and every answer is compared with Glance's: the status
code, and for successes the whole body (timestamps compared by form, not value).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.record_glance_metadefs import FLAVOR, IMAGE, RECORDING, run_sequence

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")

# Differences kept on purpose: step -> (Glance's status, streamd's status, why).
KEPT = {
    # Glance fails on int("ten") (500); streamd says what is wrong
    "list with a limit that is no number": (500, 400, "a bad limit is the caller's error"),
    "list with an unknown sort key": (500, 400, "so is a sort key that is no column"),
    # Glance's model (wsme) raises UnknownAttribute past its schema check: a 500
    "namespace with an unknown attribute in a property definition": (
        500, 400, "an attribute a definition cannot have is the caller's error"),
    "create property with an unknown attribute in its items": (500, 400, "likewise"),
    # Glance stores a definition that is no usable JSON Schema; streamd checks it (Draft 4
    # meta-schema, and the pattern compiles), so that no one applying it fails later
    "create property with a pattern that is no regular expression": (
        201, 400, "the pattern '[' does not compile"),
    "create property with an empty enum": (201, 400, "an empty enum is no valid JSON Schema"),
}
# Error bodies differ in form everywhere, on purpose: Glance sends
# {"code": "404 Not Found", "message": "…<br /><br />…", "title"} (its HTML error page turned
# into JSON); streamd sends the envelope python-glanceclient and openstacksdk read,
# {"error": {"code": 404, "message", "title"}}, with its own wording. Only the statuses of
# errors are compared, and that streamd's carry a message.


def normalise(value: Any) -> Any:
    """Timestamps become their form: two servers never share a clock."""
    if isinstance(value, dict):
        return {k: ("<time>" if k in ("created_at", "updated_at") and isinstance(v, str)
                    and TIMESTAMP.match(v) else normalise(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise(v) for v in value]
    return value


def ours(step: str, body: Any) -> Any:
    """The part of a body the comparison is about: the global resource-type list of the
    peer holds the definitions Glance ships and those earlier runs made (resource types
    outlive their namespaces), streamd's only what the sequence made so far."""
    if step == "list resource types":
        return {"resource_types": [r for r in body["resource_types"]
                                   if r["name"] in (FLAVOR, IMAGE)]}
    return body


@pytest.fixture(scope="module")
def answers(server: Any) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    recorded = json.loads(RECORDING.read_text())
    got = run_sequence(server.url)
    assert [a["step"] for a in got] == [r["step"] for r in recorded], \
        "the recording is stale: run python -m tests.record_glance_metadefs"
    return list(zip(recorded, got, strict=True))


def test_the_sequence_is_long_and_has_bad_calls(answers: list[Any]) -> None:
    assert len(answers) >= 40
    assert sum(1 for glance, _ in answers if glance["status"] >= 400) >= 20


def test_statuses_match(answers: list[Any]) -> None:
    mismatched = []
    for glance, streamd in answers:
        expected = glance["status"]
        if glance["step"] in KEPT:
            was, expected, _why = KEPT[glance["step"]]
            assert glance["status"] == was
        if streamd["status"] != expected:
            mismatched.append((glance["step"], glance["status"], streamd["status"],
                               streamd["body"]))
    assert mismatched == []


def test_success_bodies_match(answers: list[Any]) -> None:
    mismatched = []
    for glance, streamd in answers:
        if glance["status"] >= 300 or streamd["status"] != glance["status"]:
            continue
        want = normalise(ours(glance["step"], glance["body"]))
        got = normalise(ours(glance["step"], streamd["body"]))
        if want != got:
            mismatched.append((glance["step"], want, got))
    assert mismatched == []


def test_errors_say_what_was_wrong(answers: list[Any]) -> None:
    for _glance, streamd in answers:
        if streamd["status"] >= 400:
            error = streamd["body"]["error"]
            assert error["code"] == streamd["status"] and error["message"], streamd["step"]
