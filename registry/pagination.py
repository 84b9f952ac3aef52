"""Cursor pagination shared by every list endpoint.

A list answers `{"items": [...], "next_cursor": "..."}`; the cursor is an opaque token
encoding the sort key of the last item returned, so pages stay stable while records are
added (keyset pagination, no OFFSET scans).
"""

import base64
import json

import marshmallow as ma
from marshmallow import validate

from registry.problems import InvalidInput, field_error

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_BIGINT = 2**63 - 1


class PageQuerySchema(ma.Schema):
    limit = ma.fields.Integer(load_default=DEFAULT_LIMIT, validate=validate.Range(1, MAX_LIMIT),
                              metadata={"description": f"Items per page (1–{MAX_LIMIT})"})
    cursor = ma.fields.String(validate=validate.Length(max=500),
                              metadata={"description": "`next_cursor` of the previous page"})


def page_schema(item_schema: type[ma.Schema], name: str) -> type[ma.Schema]:
    """A `{items, next_cursor}` envelope schema around `item_schema`."""
    return ma.Schema.from_dict({
        "items": ma.fields.List(ma.fields.Nested(item_schema), required=True),
        "next_cursor": ma.fields.String(allow_none=True, metadata={
            "description": "Pass as `cursor` for the next page; null on the last page"}),
    }, name=name)


def encode_cursor(*key) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key), default=str).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, arity: int) -> list | None:
    """The sort key a cursor encodes, or None for the first page; 422 when it is not ours."""
    if not cursor:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError:
        key = None
    # a cursor is sent back by the client, so it may have been edited: every part of the key must
    # be what this service puts there (a row id or position, a bigint ≥ 0), or PostgreSQL is
    # handed a string, an object or an out-of-range number
    if not isinstance(key, list) or len(key) != arity or not all(_is_key_part(part) for part in key):
        raise InvalidInput([field_error("cursor", "Not a cursor this service issued.", "query")])
    return key


def _is_key_part(value) -> bool:
    return type(value) is int and 0 <= value <= MAX_BIGINT


def keyset_page(query: dict, fetch, key: str = "id") -> dict:
    """One page of a list ordered by `key`: `fetch(after, limit)` returns up to `limit` rows past
    `after` (None on the first page); `query` carries the caller's `cursor` and `limit`."""
    after = decode_cursor(query.get("cursor"), 1)
    rows = fetch(after[0] if after else None, query["limit"] + 1)
    return page(rows, query["limit"], lambda row: (row[key],))


def page(rows: list[dict], limit: int, key) -> dict:
    """Build the envelope from `limit + 1` fetched rows: the extra row says whether more exist."""
    items = rows[:limit]
    more = len(rows) > limit
    return {"items": items, "next_cursor": encode_cursor(*key(items[-1])) if more and items else None}
