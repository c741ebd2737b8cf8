"""Release steps: the database schema is upgraded (or rolled back) by a command, never by a starting worker.

    flask --app ivr db upgrade [REV]     to the newest migration (or REV), creating the schema if empty
    flask --app ivr db downgrade [REV]   one migration back (or to REV), with this release's migrations
    flask --app ivr db current           the schema's revision, and the newest this code knows
    flask --app ivr db backup|restore    the database and the spool (ivr/backups.py)

At start the line checks the schema against the migrations it knows (`schema_problem`) and refuses to
start unless it matches, with a message naming the command that fixes it; a schema newer than the code
(a newer release upgraded it) is refused with its own message. Local mode (LOCAL_MODE=1, `make run`)
upgrades itself instead: nobody else runs release steps on a developer's machine.

Under the `flask` command itself the refusal waits (`defer_refusal`): the `db` commands must run on a
schema that is not current, since that is what they are for; every other command is refused as a
server would be.
"""

from __future__ import annotations

from typing import Any

import click
from alembic.util import CommandError
from flask import Flask, current_app
from flask.cli import AppGroup, ScriptInfo

from ivr.storage import Storage
from ivr.storage.database import migration_scripts, newest_migration

#: The command that upgrades the schema, as the messages name it.
UPGRADE_COMMAND = "flask --app ivr db upgrade"


class SchemaNotCurrent(RuntimeError):
    """The database schema is not the one this code was written for: the line must not start on it."""


def schema_problem(storage: Storage) -> str | None:
    """Why the line must not start on `storage`'s schema, or None when it is at the newest migration.

    Raises the database's own error when it cannot be reached (the line starts anyway and retries).
    """
    current = storage.schema_revision()
    if current == newest_migration():  # every start: no walk through the migration files
        return None
    scripts = migration_scripts()
    head = scripts.get_current_head()
    if current is None:
        return f"The database has no schema yet. Run `{UPGRADE_COMMAND}` (with the line's settings) before starting it."
    if current not in {script.revision for script in scripts.walk_revisions()}:
        return (
            f"The database schema is at revision {current}, newer than this release knows (its newest is {head}): "
            f"a newer release upgraded it. Start that release again, or roll the schema back first with that "
            f"newer release's code (it has the migration to undo): `flask --app ivr db downgrade {head}`."
        )
    return (
        f"The database schema is at revision {current}, older than this release needs ({head}). "
        f"Run `{UPGRADE_COMMAND}` (with the line's settings) before starting it."
    )


def under_flask_command() -> bool:
    """Whether the app is being built by the `flask` command line (to run a command, not to serve)."""
    context = click.get_current_context(silent=True)
    return context is not None and context.find_object(ScriptInfo) is not None


class ReleaseCommands(AppGroup):
    """The app's `flask` commands: while the schema is not current, only `db` runs (see the module docstring)."""

    def __init__(self, app: Flask) -> None:
        super().__init__(app.cli.name)
        self.app = app

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        problem = self.app.extensions.get("careline.schema_problem")
        if command is None or not problem or cmd_name == "db":
            return command

        def refuse(**_anything: Any) -> None:
            raise click.ClickException(problem)

        # Whatever options the command would take: refused all the same.
        anything = click.Argument(["anything"], nargs=-1, type=click.UNPROCESSED)
        settings = {"ignore_unknown_options": True}
        return click.Command(cmd_name, callback=refuse, help=command.help, params=[anything], context_settings=settings)


def defer_refusal(app: Flask, problem: str) -> None:
    """Under the `flask` command: keep `problem` for every command but `db` to refuse with."""
    app.extensions["careline.schema_problem"] = problem


def init_app(app: Flask) -> None:
    """Register the `db` commands, and refuse the others while the schema is not current (call first)."""
    from ivr.backups import backup_command, restore_command  # here: ivr.backups needs the app's modules

    db.add_command(backup_command)
    db.add_command(restore_command)
    app.cli = ReleaseCommands(app)
    app.cli.add_command(db)


def _storage() -> Storage:
    storage: Storage = current_app.extensions["careline"].storage
    return storage


def _revisions(storage: Storage) -> str:
    head = migration_scripts().get_current_head()
    return f"schema at {storage.schema_revision() or 'none (empty)'}; this release's newest is {head}"


#: `flask --app ivr db ...` (AppGroup: each command runs in the app's context).
db = AppGroup("db", help="Upgrade or roll back the database schema (a release step: run it before starting a release).")


@db.command("upgrade")
@click.argument("revision", default="head")
def upgrade_command(revision: str) -> None:
    """Upgrade the schema to REVISION (default: the newest), creating it on an empty database."""
    storage = _storage()
    _step(lambda: storage.migrate(revision))
    click.echo(f"Upgraded: {_revisions(storage)}")


@db.command("downgrade")
@click.argument("revision", default="-1")
def downgrade_command(revision: str) -> None:
    """Roll the schema back to REVISION (default: -1, one migration back), with this release's migrations.

    Run it with the code of the release that upgraded (it knows how to undo its migrations), then start
    the older release. Some downgrades drop columns or tables: take a backup first (docs/deploying.md).
    """
    storage = _storage()
    _step(lambda: storage.downgrade(revision))
    click.echo(f"Downgraded: {_revisions(storage)}")


@db.command("current")
def current_command() -> None:
    """Print the schema's revision and the newest migration this release knows."""
    click.echo(_revisions(_storage()))


def _step(run: Any) -> None:
    try:
        run()
    except CommandError as error:  # an unknown revision, say: Alembic's message names it
        raise click.ClickException(str(error)) from error
