"""remembered choices: a caller's last topic is kept only when they agreed to it (issue 14)

Last topics saved before this revision were saved without asking: they are erased, so a shared phone never
greets anyone with a topic its caller did not agree to have kept. Language and speed stay.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sa.text("UPDATE preferences SET last_section = '', last_heard_at = NULL WHERE last_section <> ''"))


def downgrade() -> None:
    """Nothing to restore: the erased topics were never agreed to."""
