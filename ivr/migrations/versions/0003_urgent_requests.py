"""safety: the urgent kind and the sealed words of a request, and the staff alert outbox

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("callback_requests", schema=None) as batch_op:
        # emergency | crisis | distress, for an urgent request; never words from speech.
        batch_op.add_column(sa.Column("urgent_kind", sa.String(length=16), nullable=True))
        # What the person texted, for urgent and call-back requests only: a Fernet token (SECRET_KEY).
        batch_op.add_column(sa.Column("words", sa.Text(), nullable=True))
    op.create_table(
        "staff_alerts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("staff_alerts")
    with op.batch_alter_table("callback_requests", schema=None) as batch_op:
        batch_op.drop_column("words")
        batch_op.drop_column("urgent_kind")
