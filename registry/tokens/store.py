"""Issuing and revoking bearer tokens; only their hashes are stored.

Token rows are never deleted: with who issued and who revoked each one, they are the record
of every token the registry has handed out (GET /v1/tokens/), next to the audit trail.
"""

from registry.audit import store as audit
from registry.auth import Principal, hash_token, new_token

TOKEN_COLUMNS = "id, centre_id, role, label, created_at, issued_by_token_id, revoked_at, revoked_by_token_id"


def issue_token(conn, centre_id: int, role: str, label: str | None = None, actor: Principal | None = None
                ) -> tuple[dict, str]:
    """Store a new token's hash; return its row and the secret, which is shown once and never stored.

    `actor` is the token issuing it; None for the command line."""
    token = new_token()
    row = conn.execute(
        f"""INSERT INTO tokens (centre_id, role, token_hash, label, issued_by_token_id)
            VALUES (%s, %s, %s, %s, %s) RETURNING {TOKEN_COLUMNS}""",
        (centre_id, role, hash_token(token), label, actor.token_id if actor else None),
    ).fetchone()
    audit.record(conn, centre_id=centre_id, action="create", entity="token", entity_id=row["id"],
                 changed_fields=("role", "label"), actor=actor)
    return row, token


def revoke_token(conn, token_id: int, actor: Principal | None = None, centre_id: int | None = None,
                 roles: list[str] | None = None) -> dict | None:
    """Mark a token revoked (revoking twice is harmless); None when there is no such token
    (of `centre_id` and one of `roles`, when given)."""
    row = conn.execute(
        f"""UPDATE tokens SET revoked_at = coalesce(revoked_at, now()),
                              revoked_by_token_id = CASE WHEN revoked_at IS NULL THEN %(actor)s
                                                         ELSE revoked_by_token_id END
            WHERE id = %(id)s AND (%(centre_id)s::bigint IS NULL OR centre_id = %(centre_id)s)
              AND (%(roles)s::text[] IS NULL OR role = ANY(%(roles)s))
            RETURNING {TOKEN_COLUMNS}""",
        {"id": token_id, "actor": actor.token_id if actor else None, "centre_id": centre_id, "roles": roles},
    ).fetchone()
    if row is not None:
        audit.record(conn, centre_id=row["centre_id"], action="revoke", entity="token", entity_id=token_id,
                     changed_fields=("revoked_at",), actor=actor)
    return row


def list_tokens(conn, after_id: int | None = None, limit: int | None = None, filters: dict | None = None,
                roles: list[str] | None = None) -> list[dict]:
    """Tokens in id order, after `after_id` (keyset pagination), optionally by centre, role,
    issuer and revocation; only those of `roles` when given."""
    filters = filters or {}
    return conn.execute(
        f"""SELECT {TOKEN_COLUMNS} FROM tokens WHERE (%(after)s::bigint IS NULL OR id > %(after)s)
              AND (%(centre_id)s::bigint IS NULL OR centre_id = %(centre_id)s)
              AND (%(role)s::text IS NULL OR role = %(role)s)
              AND (%(roles)s::text[] IS NULL OR role = ANY(%(roles)s))
              AND (%(issued_by)s::bigint IS NULL OR issued_by_token_id = %(issued_by)s)
              AND (%(revoked)s::boolean IS NULL OR (revoked_at IS NOT NULL) = %(revoked)s)
            ORDER BY id LIMIT %(limit)s""",
        {"after": after_id, "limit": limit, "centre_id": filters.get("centre_id"), "role": filters.get("role"),
         "roles": roles, "issued_by": filters.get("issued_by_token_id"), "revoked": filters.get("revoked")},
    ).fetchall()
