"""`flask --app ivr purge --older-than 90d`: keep health data no longer than the line needs it.

Removes call-back requests staff marked done (and with them the reference to their recording),
usage counts, call places, handled-message keys, text conversations, remembered choices, opt-ins, sign-in failures and
staff acceptances older than the retention period (RETENTION_DAYS, default 90; `--older-than`
overrides it), then prints how many rows it removed from each table. Open call-back requests and
opt-outs are never removed. The staff audit (who did what and when, no health data) is kept for
its own period, AUDIT_RETENTION_DAYS (default 2190, six years), which `--older-than` does not change.
Run it daily (cron, a systemd timer, a scheduled job).
"""

from __future__ import annotations

import datetime as dt
import re

import click
from flask import current_app
from flask.cli import with_appcontext

from ivr.services import now, services

_PERIOD = re.compile(r"^\s*(\d{1,5})\s*([dw]?)\s*$")
#: Shorter periods would forget the keys that make Twilio's retries harmless.
MIN_DAYS = 1


def parse_period(text: str) -> dt.timedelta:
    """'90d', '12w' or '90' (days) -> a timedelta of at least a day."""
    match = _PERIOD.match(text)
    if not match:
        raise click.BadParameter(f"{text!r} is not a period like 90d or 12w")
    days = int(match.group(1)) * (7 if match.group(2) == "w" else 1)
    if days < MIN_DAYS:
        raise click.BadParameter(f"keep at least {MIN_DAYS} day, not {days}")
    return dt.timedelta(days=days)


@click.command("purge")
@click.option("--older-than", "older_than", default=None, help="Period to keep: 90d, 12w (default RETENTION_DAYS).")
@click.option("--dry-run", is_flag=True, help="Only count what would be removed.")
@with_appcontext
def purge_command(older_than: str | None, dry_run: bool) -> None:
    """Remove data older than the retention period, and say what was removed."""
    period = parse_period(older_than) if older_than else dt.timedelta(days=current_app.config["RETENTION_DAYS"])
    cutoff = now() - period
    audit_cutoff = now() - dt.timedelta(days=current_app.config["AUDIT_RETENTION_DAYS"])
    removed = services().storage.purge(cutoff, dry_run=dry_run, audit_cutoff=audit_cutoff)
    verb = "Would remove" if dry_run else "Removed"
    click.echo(f"{verb} data older than {period.days} days (before {cutoff:%Y-%m-%d %H:%M} UTC):")
    for table, count in removed.items():
        click.echo(f"  {table:<18} {count:>7}")
    click.echo(f"  {'total':<18} {sum(removed.values()):>7}")
