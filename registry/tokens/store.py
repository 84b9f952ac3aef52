"""Issuing and revoking bearer tokens; only their hashes are stored."""

from registry.audit import store as audit
from registry.auth import hash_token, new_token

TOKEN_COLUMNS = "id, centre_id, role, label, created_at, revoked_at"


def issue_token(conn, centre_id: int, role: str, label: str | None = None, actor=None) -> tuple[dict, str]:
    """Store a new token's hash; return its row and the secret, which is shown once and never stored."""
    token = new_token()
    row = conn.execute(
        f"""INSERT INTO tokens (centre_id, role, token_hash, label) VALUES (%s, %s, %s, %s)
            RETURNING {TOKEN_COLUMNS}""",
        (centre_id, role, hash_token(token), label),
    ).fetchone()
    audit.record(conn, centre_id=centre_id, action="create", entity="token", entity_id=row["id"],
                 changed_fields=("role", "label"), actor=actor)
    return row, token


def revoke_token(conn, token_id: int, actor=None) -> dict | None:
    """Mark a token revoked (revoking twice is harmless); None when there is no such token."""
    row = conn.execute(
        f"""UPDATE tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = %s
            RETURNING {TOKEN_COLUMNS}""",
        (token_id,),
    ).fetchone()
    if row is not None:
        audit.record(conn, centre_id=row["centre_id"], action="revoke", entity="token", entity_id=token_id,
                     changed_fields=("revoked_at",), actor=actor)
    return row


def list_tokens(conn, after_id: int | None = None, limit: int | None = None, filters: dict | None = None
                ) -> list[dict]:
    """Tokens in id order, after `after_id` (keyset pagination), optionally by centre, role, revoked."""
    filters = filters or {}
    return conn.execute(
        f"""SELECT {TOKEN_COLUMNS} FROM tokens WHERE (%(after)s::bigint IS NULL OR id > %(after)s)
              AND (%(centre_id)s::bigint IS NULL OR centre_id = %(centre_id)s)
              AND (%(role)s::text IS NULL OR role = %(role)s)
              AND (%(revoked)s::boolean IS NULL OR (revoked_at IS NOT NULL) = %(revoked)s)
            ORDER BY id LIMIT %(limit)s""",
        {"after": after_id, "limit": limit, "centre_id": filters.get("centre_id"), "role": filters.get("role"),
         "revoked": filters.get("revoked")},
    ).fetchall()
