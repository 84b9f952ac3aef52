"""The report maintainer's batches and an erasure's refresh run without JIT compilation.

A batch of `report_maintain()` refreshes a few thousand operations' facts: a statement whose
estimated cost (the facts view's correlated look-ups, counted per operation) is far above
PostgreSQL's `jit_above_cost` thresholds, so the server compiled its hundreds of expressions
with LLVM on every batch. With 0015's score columns the compiling took 5.7 s of a 6.4 s batch
of 5,000 operations (the work itself about 0.7 s); at 0014 it was already a third to a half of
the batch. The reports turn JIT off for the same reason (registry/reports/routes.py).

Set on the functions (`ALTER FUNCTION ... SET jit = off`), not on the maintainer's connection:
a session setting does not survive PgBouncer's transaction pooling, a function's does, and
tests or an operator calling `report_maintain()` by hand get it too. `report_forget_erased()`
(an erasure) refreshes operations the same way. Nothing else changes.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-29
"""
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

FUNCTIONS = ("report_maintain(integer, bigint, bigint)", "report_forget_erased(bigint)")


def upgrade() -> None:
    for function in FUNCTIONS:
        op.execute(f"ALTER FUNCTION {function} SET jit = off")


def downgrade() -> None:
    for function in FUNCTIONS:
        op.execute(f"ALTER FUNCTION {function} RESET jit")
