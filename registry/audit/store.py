"""The append-only audit trail: who did what to which record, never the clinical values."""

from flask import g, has_request_context

from registry.auth import Principal


def record(conn, *, centre_id: int, action: str, entity: str, entity_id: int | None,
           changed_fields=(), actor: Principal | None = None) -> None:
    """Append one audit event in the caller's transaction (so it commits with the change)."""
    request_id = g.get("request_id") if has_request_context() else None
    conn.execute(
        """INSERT INTO audit_events
               (centre_id, actor_token_id, actor_role, request_id, action, entity, entity_id, changed_fields)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s)""",
        (centre_id, actor.token_id if actor else None, actor.role if actor else "cli", request_id,
         action, entity, entity_id, sorted(changed_fields)),
    )


def list_events(conn, centre_id: int | None, filters: dict, after_id: int | None, limit: int) -> list[dict]:
    """Audit events in id order after `after_id`: one centre's, or every centre's when None."""
    return conn.execute(
        """SELECT id, centre_id, occurred_at, actor_token_id, actor_role, request_id, action, entity,
                  entity_id, changed_fields
           FROM audit_events
           WHERE (%(centre_id)s::bigint IS NULL OR centre_id = %(centre_id)s)
             AND (%(after)s::bigint IS NULL OR id > %(after)s)
             AND (%(entity)s::text IS NULL OR entity = %(entity)s)
             AND (%(entity_id)s::bigint IS NULL OR entity_id = %(entity_id)s)
             AND (%(action)s::text IS NULL OR action = %(action)s)
             AND (%(since)s::timestamptz IS NULL OR occurred_at >= %(since)s)
           ORDER BY id LIMIT %(limit)s""",
        {"centre_id": centre_id, "after": after_id, "limit": limit,
         **{name: filters.get(name) for name in ("entity", "entity_id", "action", "since")}}).fetchall()
