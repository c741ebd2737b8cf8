"""call_places: where each call was in the menu when it ended, for the staff page's picture of the line

One row per call, keyed by a keyed hash of its CallSid: the last place the line answered (a menu node
and section), when the call started, and how it ended (Twilio's call status callback, POST /voice/status).
No phone number and nothing said is kept.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "call_places",
        sa.Column("call_key", sa.String(64), primary_key=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("place", sa.String(16), nullable=False, server_default=""),
        sa.Column("section", sa.String(32), nullable=False, server_default=""),
        sa.Column("lang", sa.String(8), nullable=False, server_default=""),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("seconds", sa.Integer(), nullable=True),
    )
    op.create_index("ix_call_places_started_at", "call_places", ["started_at"])


def downgrade() -> None:
    op.drop_index("ix_call_places_started_at", table_name="call_places")
    op.drop_table("call_places")
