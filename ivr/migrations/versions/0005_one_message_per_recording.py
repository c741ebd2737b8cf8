"""queue: one voice message per recording (a unique index on callback_requests.recording_sid)

Twilio's Record action and recordingStatusCallback could each add the same recording (issue 15,
item 3). Duplicates already kept are removed first: of each recording's rows the oldest stays, marked
done if staff marked any of its copies done (the same message, already dealt with).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Both databases allow any number of NULLs in a unique index: requests without a recording are free.
    op.execute(
        sa.text(
            "UPDATE callback_requests SET status = 'done',"
            " done_by = (SELECT MAX(copy.done_by) FROM callback_requests copy"
            "   WHERE copy.recording_sid = callback_requests.recording_sid AND copy.status = 'done'),"
            " done_at = (SELECT MAX(copy.done_at) FROM callback_requests copy"
            "   WHERE copy.recording_sid = callback_requests.recording_sid AND copy.status = 'done')"
            " WHERE status = 'open' AND recording_sid IS NOT NULL AND EXISTS ("
            "   SELECT 1 FROM callback_requests copy"
            "   WHERE copy.recording_sid = callback_requests.recording_sid AND copy.status = 'done')"
        )
    )
    op.execute(
        sa.text(
            "DELETE FROM callback_requests WHERE recording_sid IS NOT NULL AND id > ("
            " SELECT MIN(copy.id) FROM callback_requests copy"
            " WHERE copy.recording_sid = callback_requests.recording_sid)"
        )
    )
    op.create_index("ix_callback_requests_recording_sid", "callback_requests", ["recording_sid"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_callback_requests_recording_sid", table_name="callback_requests")
