"""Clinical sign-off of the line's words: which prompt files a clinician approved, and whether that still holds.

Every prompt file carries review data (status, reviewed_by, reviewed_on, next_review, sources; see
ivr/content.py). `flask --app ivr content-approve --reviewer "NAME, CREDENTIAL" FILE...` marks the files
approved by that reviewer and records each file's SHA-256 in prompts/approvals.yaml, so any later edit,
even of one comma, shows as "changed since approval" until someone approves the file again.

A file may be served as approved only when its status is approved, its hash matches its recorded
approval, and its next_review date has not passed. With CONTENT_MUST_BE_APPROVED=1 the app refuses to
start otherwise, naming each file and why; without it, start-up logs one warning that names them, the
staff page shows a banner, and content-report shows each file's state.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

import click
import yaml
from flask.cli import with_appcontext

from ivr.content import APPROVALS_FILE, PROMPTS_DIR, Content, ContentError, file_sha256, load_content, prompt_files

#: How long an approval holds when the reviewer names no other date.
REVIEW_EVERY = dt.timedelta(days=365)
#: "NAME, CREDENTIAL": a reviewer names themselves and the credential they sign with.
_REVIEWER = re.compile(r"^\s*[^,]{2,}\s*,\s*[^,]{2,}.*$")


class ContentNotApproved(RuntimeError):
    """CONTENT_MUST_BE_APPROVED is set and some content is not (or no longer) approved."""


@dataclass(frozen=True)
class FileState:
    """One prompt file's sign-off: its status, who approved it, and why it is not approved (if it is not)."""

    path: str
    status: str
    reviewed_by: str
    next_review: dt.date
    approved_by: str
    approved_on: dt.date | None
    problems: tuple[str, ...]

    @property
    def approved(self) -> bool:
        return not self.problems


def file_states(content: Content, today: dt.date) -> list[FileState]:
    """The sign-off state of every prompt file of `content` (as loaded), on `today`."""
    states = []
    for name, review in content.reviews.items():
        approval = content.approvals.get(name)
        problems = []
        if review.status != "approved":
            problems.append(f"status is {review.status}")
        elif approval is None:
            problems.append("approved in the file but not recorded in approvals.yaml (run content-approve)")
        elif approval.sha256 != review.sha256:
            problems.append(f"changed since {approval.reviewer} approved it on {approval.approved_on}")
        if review.next_review <= today:
            problems.append(f"review was due on {review.next_review}")
        states.append(
            FileState(
                path=name,
                status=review.status,
                reviewed_by=review.reviewed_by,
                next_review=review.next_review,
                approved_by=approval.reviewer if approval else "",
                approved_on=approval.approved_on if approval else None,
                problems=tuple(problems),
            )
        )
    return states


def unapproved(content: Content, today: dt.date) -> list[FileState]:
    """The prompt files that may not be served as clinically approved on `today`, with why."""
    return [state for state in file_states(content, today) if not state.approved]


def describe(states: list[FileState]) -> str:
    """One line naming every file and why: "en/voice.yaml (status is draft); ..."."""
    return "; ".join(f"{state.path} ({', '.join(state.problems)})" for state in states)


def check_at_start(content: Content, today: dt.date, must_be_approved: bool) -> str | None:
    """At start-up: raise ContentNotApproved when approval is required and missing; else the warning
    to log (None when everything is approved)."""
    waiting = unapproved(content, today)
    if not waiting:
        return None
    if must_be_approved:
        raise ContentNotApproved(
            f"CONTENT_MUST_BE_APPROVED is set, and {len(waiting)} prompt file(s) are not clinically approved: "
            + describe(waiting)
        )
    return f"{len(waiting)} prompt file(s) are not clinically approved (draft, changed, or due): {describe(waiting)}"


def approve(
    root: Path, names: list[str], reviewer: str, today: dt.date, next_review: dt.date | None = None
) -> list[str]:
    """Mark the prompt files `names` (paths under `root`) approved by `reviewer` on `today`, and record their
    hashes in approvals.yaml; return the names approved. The files must load as valid content afterwards."""
    if not _REVIEWER.match(reviewer):
        raise click.UsageError('--reviewer must be "NAME, CREDENTIAL", e.g. "Ana Ruiz, RN"')
    due = next_review or today + REVIEW_EVERY
    if due <= today:
        raise click.UsageError("--next-review must be a date after today")
    known = {path.relative_to(root).as_posix(): path for path in prompt_files(root)}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise click.UsageError(f"not prompt files under {root}: {', '.join(unknown)}")
    originals = {name: known[name].read_text(encoding="utf-8") for name in names}
    for name in names:
        known[name].write_text(_signed(originals[name], reviewer, today, due), encoding="utf-8")
    try:
        load_content(root)  # an approval never leaves content the line cannot load
    except ContentError:
        for name, text in originals.items():
            known[name].write_text(text, encoding="utf-8")
        raise
    path = root / APPROVALS_FILE
    existing = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else None
    entries = dict((existing or {}).get("approvals") or {})
    for name in names:
        entries[name] = {"sha256": file_sha256(known[name]), "reviewer": reviewer, "approved_on": today}
    header = (
        "# Written by `flask --app ivr content-approve`: the SHA-256 of each prompt file as a clinician approved it.\n"
        "# Do not edit by hand. A file whose hash no longer matches counts as changed since approval.\n"
    )
    body = yaml.safe_dump({"approvals": dict(sorted(entries.items()))}, allow_unicode=True, sort_keys=False)
    path.write_text(header + body, encoding="utf-8")
    return names


def _signed(text: str, reviewer: str, today: dt.date, due: dt.date) -> str:
    """`text` with its review entries set to approved by `reviewer`; comments and everything else kept."""
    values = {
        "status": "approved",
        "reviewed_by": '"' + reviewer.replace('"', "'") + '"',
        "reviewed_on": today.isoformat(),
        "next_review": due.isoformat(),
    }
    for name, value in values.items():
        text, count = re.subn(rf"^{name}:.*$", f"{name}: {value}", text, count=1, flags=re.MULTILINE)
        if count != 1:
            raise click.UsageError(f"a prompt file lacks its {name} entry; add the review entries first")
    return text


@click.command("content-approve")
@click.option("--reviewer", required=True, help='Who approves, as "NAME, CREDENTIAL".')
@click.option("--next-review", "next_review", default=None, help="When the files are due again (YYYY-MM-DD).")
@click.option("--all", "approve_all", is_flag=True, help="Approve every prompt file.")
@click.argument("files", nargs=-1)
@with_appcontext
def content_approve_command(reviewer: str, next_review: str | None, approve_all: bool, files: tuple[str, ...]) -> None:
    """Record a clinician's approval of prompt FILES (paths under prompts/, e.g. en/sections/hospice.yaml)."""
    from flask import current_app

    from ivr.services import now

    root = Path(current_app.config.get("PROMPTS_DIR") or PROMPTS_DIR)
    names = [path.relative_to(root).as_posix() for path in prompt_files(root)] if approve_all else list(files)
    if not names:
        raise click.UsageError("name the files to approve (paths under prompts/), or --all")
    names = [name.removeprefix("prompts/") for name in names]
    today = now().date()
    due = dt.date.fromisoformat(next_review) if next_review else None
    for name in approve(root, names, reviewer, today, due):
        click.echo(f"approved {name} ({reviewer}, {today}); next review {due or today + REVIEW_EVERY}")
    click.echo(f"Recorded in {root / APPROVALS_FILE}. Restart the line to serve the approved content.")
