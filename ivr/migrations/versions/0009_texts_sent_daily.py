"""texts: how many texts the line sent today to each number and for each staff member

The daily caps of the outbound-text policy (ivr/outbound_texts.py, issue 15 item 1) are checked and
counted against this table in one statement, so every process on every machine shares them.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "texts_sent_daily",
        sa.Column("counter", sa.String(80), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("messages", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("counter", "day"),
    )


def downgrade() -> None:
    op.drop_table("texts_sent_daily")
