"""Optimistic concurrency: every record has an ETag; replacing or patching it needs If-Match.

Without If-Match a replace is refused with 428 (a blind overwrite is never what a hospital
system means); with a stale one it is refused with 412 and the current ETag, so the caller
can re-read and decide. The ETag is the record's version, bumped on every change.
"""

from flask import request

from registry.problems import Problem

IF_MATCH_PARAMETER = {
    "in": "header", "name": "If-Match", "required": True, "schema": {"type": "string"},
    "description": "The ETag of the version you read; 412 when the record changed since, 428 when missing",
}
ETAG_HEADER = {"ETag": {"description": "Version of the record, for If-Match", "schema": {"type": "string"}}}


def etag(record: dict) -> str:
    return f'"{record["id"]}.{record["version"]}"'


def require_if_match(current: dict) -> None:
    """Refuse the change unless the caller's If-Match names the current version."""
    sent = request.headers.get("If-Match")
    if sent is None:
        raise Problem(428, "Send If-Match with the ETag of the version you are changing.",
                      slug="precondition-required")
    candidates = [tag.strip().removeprefix("W/") for tag in sent.split(",")]
    if "*" not in candidates and etag(current) not in candidates:
        raise Problem(412, "The record changed since you read it: read it again and reapply your change.",
                      slug="precondition-failed", headers={"ETag": etag(current)})
