"""The report query audit: who asked which report with which parameters, and when.

Analysts could recover withheld figures by differencing several ordinary queries; a registry
manager investigating that needs to see what was asked. One row per report request, written
on the primary (reports may read from a replica) before the report is built, so a request
that times out is recorded too. It holds parameters only, never a figure.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
CREATE TABLE report_queries (
    centre_id   bigint NOT NULL REFERENCES centres (id),   -- the asking token's centre
    id          bigint GENERATED ALWAYS AS IDENTITY,
    asked_at    timestamptz NOT NULL DEFAULT now(),
    token_id    bigint,                                    -- NULL: the command line
    role        text NOT NULL,
    request_id  text,
    report      text NOT NULL,
    parameters  jsonb NOT NULL,
    CONSTRAINT report_queries_pkey PRIMARY KEY (centre_id, id)
);
CREATE INDEX report_queries_id_idx ON report_queries (id);
CREATE INDEX report_queries_token_idx ON report_queries (token_id, id);
""")


def downgrade() -> None:
    op.execute("DROP TABLE report_queries")
