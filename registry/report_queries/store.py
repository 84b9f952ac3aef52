"""Recording and listing report queries (parameters only, never figures)."""

import json

from flask import g, has_request_context
from psycopg.types.json import Jsonb

from registry.auth import Principal

REPORTS = ("complications", "fusion", "outcomes", "scores", "completeness", "centres")


def parameters_of(query: dict) -> dict:
    """The parsed query as JSON: dates as ISO strings, absent and empty parameters left out."""
    return {name: value.isoformat() if hasattr(value, "isoformat") else value
            for name, value in sorted(query.items()) if value not in (None, [], "")}


def record(conn, principal: Principal, report: str, query: dict) -> None:
    """Append one query in the caller's transaction."""
    request_id = g.get("request_id") if has_request_context() else None
    conn.execute(
        """INSERT INTO report_queries (centre_id, token_id, role, request_id, report, parameters)
           VALUES (%s, %s, %s, %s, %s, %s)""",
        (principal.centre_id, principal.token_id, principal.role, request_id, report,
         Jsonb(parameters_of(query), dumps=lambda value: json.dumps(value, default=str))))


def list_queries(conn, filters: dict, after_id: int | None, limit: int) -> list[dict]:
    """Queries in id order after `after_id`, optionally by centre, token, report and time."""
    return conn.execute(
        """SELECT id, asked_at, centre_id, token_id, role, request_id, report, parameters
           FROM report_queries
           WHERE (%(after)s::bigint IS NULL OR id > %(after)s)
             AND (%(centre_id)s::bigint IS NULL OR centre_id = %(centre_id)s)
             AND (%(token_id)s::bigint IS NULL OR token_id = %(token_id)s)
             AND (%(report)s::text IS NULL OR report = %(report)s)
             AND (%(since)s::timestamptz IS NULL OR asked_at >= %(since)s)
           ORDER BY id LIMIT %(limit)s""",
        {"after": after_id, "limit": limit,
         **{name: filters.get(name) for name in ("centre_id", "token_id", "report", "since")}}).fetchall()
