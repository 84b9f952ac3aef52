"""Token lifecycle: every token expires, may be rotated, and records when it was last used.

- `expires_at` (NOT NULL: no token lives forever). The code issues tokens for TOKEN_DEFAULT_DAYS
  (90 by default), at most TOKEN_MAX_DAYS (365). Tokens issued before this revision were never
  given an end date; they expire EXISTING_TOKENS_DAYS (90) days after this migration runs, as if
  issued that day with the default lifetime: long enough to rotate every hospital feed without
  an outage, short enough that no unreviewed credential outlives a quarter. `GET /v1/tokens/`
  and `registry tokens list` show each token's `expires_at`.
- `successor_token_id`: set when a token is rotated; its `expires_at` is then brought forward to
  the end of the rotation's grace period. A token is rotated once (UNIQUE: one successor).
- `last_used_at`: when a request last authenticated with it, to the minute (written at most
  once a minute per token, so reads do not become a write per request).

Downgrading ends every token's lifecycle in the safe direction: the code before this revision
knows no expiry, so tokens already expired, or replaced by a successor, are revoked rather
than brought back to life.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28
"""
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# What this revision gave the tokens that existed before it (not read from the settings, which
# may change later: a migration states what it did).
EXISTING_TOKENS_DAYS = 90


def upgrade() -> None:
    op.execute(f"""
ALTER TABLE tokens
    ADD COLUMN expires_at timestamptz,
    ADD COLUMN last_used_at timestamptz,
    ADD COLUMN successor_token_id bigint CONSTRAINT tokens_successor_fkey REFERENCES tokens (id)
        CONSTRAINT tokens_successor_key UNIQUE;
UPDATE tokens SET expires_at = now() + make_interval(days => {EXISTING_TOKENS_DAYS});
ALTER TABLE tokens ALTER COLUMN expires_at SET NOT NULL,
    ADD CONSTRAINT ck_tokens_expiry CHECK (expires_at > created_at),
    ADD CONSTRAINT ck_tokens_successor CHECK (successor_token_id <> id);
""")


def downgrade() -> None:
    op.execute("""
UPDATE tokens SET revoked_at = now()
    WHERE revoked_at IS NULL AND (expires_at <= now() OR successor_token_id IS NOT NULL);
ALTER TABLE tokens DROP COLUMN successor_token_id, DROP COLUMN last_used_at, DROP COLUMN expires_at;
""")
