"""Staff accounts (staff_users), failed sign-ins (login_attempts), and transfers staff took (staff_acceptances)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from ivr.storage.database import Database, for_each_database
from ivr.storage.schema import as_utc, from_db, login_attempts, staff_acceptances, staff_users, utcnow

NEW_USER = for_each_database(lambda insert: insert(staff_users).on_conflict_do_nothing())
NEW_ACCEPTANCE = for_each_database(lambda insert: insert(staff_acceptances).on_conflict_do_nothing())


class StaffRecords(Database):
    """What the staff page and staff transfers keep."""

    # -- accounts (wait for the disk: a changed password must not come back after a power cut) --

    def create_staff_user(self, username: str, password_hash: str) -> bool:
        """Add a staff account; False when the name is taken."""
        values = {"username": username, "password_hash": password_hash, "created_at": utcnow()}
        with self.durable() as connection:
            return connection.execute(NEW_USER[connection.dialect.name], values).rowcount == 1

    def set_staff_password(self, username: str, password_hash: str) -> bool:
        """Change a staff member's password hash; False when there is no such account."""
        statement = staff_users.update().where(staff_users.c.username == username).values(password_hash=password_hash)
        with self.durable() as connection:
            return connection.execute(statement).rowcount == 1

    def end_staff_sessions(self, username: str) -> bool:
        """End every open session of `username` (sign-out): their cookies no longer sign anyone in."""
        statement = (
            staff_users.update()
            .where(staff_users.c.username == username)
            .values(session_generation=staff_users.c.session_generation + 1)
        )
        with self.durable() as connection:
            return connection.execute(statement).rowcount == 1

    def staff_user(self, username: str) -> dict[str, Any] | None:
        """The staff account called `username`, or None."""
        query = sa.select(staff_users).where(staff_users.c.username == username)
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        return dict(row._mapping) if row else None

    # -- failed sign-ins --------------------------------------------------------------------------

    def record_login_failure(self, key_hashes: list[str], at: dt.datetime) -> None:
        """Note one failed sign-in against each key (user name, address); forget failures older than a day."""
        at = as_utc(at)
        with self.durable() as connection:
            connection.execute(login_attempts.delete().where(login_attempts.c.at < at - dt.timedelta(days=1)))
            connection.execute(login_attempts.insert(), [{"key_hash": key, "at": at} for key in key_hashes])

    def login_failures(self, key_hash: str, since: dt.datetime) -> int:
        """Failed sign-ins against `key_hash` since `since`."""
        query = (
            sa.select(sa.func.count())
            .select_from(login_attempts)
            .where(login_attempts.c.key_hash == key_hash, login_attempts.c.at >= as_utc(since))
        )
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def recent_login_failures(self, key_hash: str, since: dt.datetime) -> tuple[int, dt.datetime | None]:
        """Failed sign-ins against `key_hash` since `since`, and when the latest of them was."""
        query = sa.select(sa.func.count(), sa.func.max(login_attempts.c.at)).where(
            login_attempts.c.key_hash == key_hash, login_attempts.c.at >= as_utc(since)
        )
        with self.engine.connect() as connection:
            count, latest = connection.execute(query).one()
        return int(count), from_db(latest)

    def clear_login_failures(self, key_hash: str) -> None:
        """Forget the failed sign-ins against `key_hash` (after a successful one)."""
        with self.durable() as connection:
            connection.execute(login_attempts.delete().where(login_attempts.c.key_hash == key_hash))

    # -- transfers --------------------------------------------------------------------------------

    def accept_staff_call(self, call_sid: str) -> None:
        """A staff member pressed 1 to take the caller; `call_sid` is the staff member's leg of the call."""
        if not call_sid:
            return
        with self.durable() as connection:
            connection.execute(NEW_ACCEPTANCE[connection.dialect.name], {"call_sid": call_sid, "accepted_at": utcnow()})

    def staff_accepted(self, call_sid: str) -> bool:
        """Whether the staff member on leg `call_sid` pressed 1 to take the caller."""
        if not call_sid:
            return False
        query = sa.select(staff_acceptances.c.call_sid).where(staff_acceptances.c.call_sid == call_sid)
        with self.engine.connect() as connection:
            return connection.execute(query).first() is not None
