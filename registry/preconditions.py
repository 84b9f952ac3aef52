"""Optimistic concurrency: every record has an ETag; replacing or patching it needs If-Match.

Without If-Match a replace is refused with 428 (a blind overwrite is never what a hospital
system means); with a stale one it is refused with 412 and the current ETag, so the caller
can re-read and decide. The ETag is the record's version, bumped on every change.

If-Match is compared strongly (RFC 9110 §13.1.1): a weak validator (`W/"…"`) never matches,
so it is refused with 412 saying so. `If-Match: *` ("any version") is refused with 428 on
every record: it would let concurrent writers overwrite each other blindly, which is exactly
what If-Match is here to prevent.
"""

import re

from flask import request

from registry.problems import Problem, field_error

HEADER = "If-Match"
IF_MATCH_PARAMETER = {
    "in": "header", "name": HEADER, "required": True, "schema": {"type": "string"},
    "description": "The ETag of the version you read, quotes included (strong comparison: a weak `W/` tag "
                   "never matches); 412 when the record changed since, 428 when missing or `*`",
}
ETAG_HEADER = {"ETag": {"description": "Version of the record, for If-Match", "schema": {"type": "string"}}}

# One element of If-Match's list: an optional weak prefix and a quoted opaque tag (RFC 9110 §8.8.3)
_ENTITY_TAG = re.compile(r'[ \t]*(W/)?("[\x21\x23-\x7e\x80-\xff]*")[ \t]*(?:,|$)')


def etag(record: dict) -> str:
    return f'"{record["id"]}.{record["version"]}"'


def _entity_tags(value: str) -> list[tuple[bool, str]] | None:
    """(weak, tag) for each entity-tag of the header, or None when it is not a list of them."""
    tags, pos = [], 0
    while pos < len(value):
        match = _ENTITY_TAG.match(value, pos)
        if match is None or match.end() == pos:
            return None
        tags.append((match.group(1) is not None, match.group(2)))
        pos = match.end()
    return tags or None


def _refused(status: int, slug: str, detail: str, message: str, current: dict | None = None) -> Problem:
    return Problem(status, detail, slug=slug, errors=[field_error(HEADER, message, "headers")],
                   headers={"ETag": etag(current)} if current is not None else None)


def require_if_match(current: dict) -> None:
    """Refuse the change unless the caller's If-Match names the current version (strongly)."""
    sent = request.headers.get(HEADER)
    if sent is None:
        raise Problem(428, "Send If-Match with the ETag of the version you are changing.",
                      slug="precondition-required")
    if sent.strip() == "*":
        raise _refused(428, "precondition-required",
                       "If-Match: * would overwrite whatever version is stored: send the ETag of the version "
                       "you read.", "`*` is not accepted: send the record's ETag.")
    tags = _entity_tags(sent)
    if tags is None:
        raise _refused(412, "precondition-failed", "If-Match names no version of this record.",
                       'Send the ETag exactly as the registry gave it, quotes included (e.g. "12.3").', current)
    if (False, etag(current)) in tags:
        return
    if all(weak for weak, _ in tags):
        raise _refused(412, "precondition-failed",
                       "A weak ETag (W/...) never matches: If-Match compares versions strongly.",
                       "Weak validators are not accepted: send the ETag without W/.", current)
    raise _refused(412, "precondition-failed",
                   "The record changed since you read it: read it again and reapply your change.",
                   "This is not the current version of the record.", current)
