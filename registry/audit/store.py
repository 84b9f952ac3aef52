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
