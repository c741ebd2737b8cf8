"""staff: the audit table of staff actions, and what following a request through keeps

- staff_audit: who did what, when, to which request (issue 15 item 7). Codes only: never the words a
  person said or wrote, never a phone number. Kept by `purge` past its own AUDIT_RETENTION_DAYS.
- request_notes: a staff member's short notes on a request (sealed: they may hold health information).
- callback_requests: who claimed it ("I'm calling") and when, the outcome it was closed with, and the
  voice message's transcript (sealed) with its state.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "staff_audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("staff", sa.String(64), nullable=False),
        sa.Column("action", sa.String(24), nullable=False),
        # No foreign key: the audit outlives the requests `purge` removes.
        sa.Column("request_id", sa.Integer, nullable=True, index=True),
        sa.Column("detail", sa.String(32), nullable=False, server_default=""),
    )
    op.create_table(
        "request_notes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.Integer, nullable=False, index=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("staff", sa.String(64), nullable=False),
        sa.Column("words", sa.Text, nullable=False),
    )
    with op.batch_alter_table("callback_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claimed_by", sa.String(64), nullable=True))
        batch_op.add_column(sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("outcome", sa.String(16), nullable=True))
        batch_op.add_column(sa.Column("transcript", sa.Text, nullable=True))
        batch_op.add_column(sa.Column("transcript_state", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("callback_requests", schema=None) as batch_op:
        batch_op.drop_column("transcript_state")
        batch_op.drop_column("transcript")
        batch_op.drop_column("outcome")
        batch_op.drop_column("claimed_at")
        batch_op.drop_column("claimed_by")
    op.drop_table("request_notes")
    op.drop_table("staff_audit")
