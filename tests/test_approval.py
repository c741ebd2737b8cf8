"""Clinical sign-off as a workflow: approve, edit, refuse to start, re-approve; the warning, the report, the banner.

Every test works on a copy of prompts/: the shipped content stays a draft, since no clinician has approved it.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
from pathlib import Path

import pytest
import yaml
from flask import Flask

from ivr import approval, create_app
from ivr.content import APPROVALS_FILE, PROMPTS_DIR, ContentError, load_content, prompt_files
from tests.conftest import app_config
from tests.helpers.staff_support import add_staff, make_app, sign_in

TODAY = dt.datetime(2026, 12, 8, 9, 0, tzinfo=dt.UTC)
REVIEWER = "Ana Ruiz, RN, MSN"


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    copy = tmp_path / "prompts"
    shutil.copytree(PROMPTS_DIR, copy)
    return copy


def config(tmp_path: Path, prompts: Path, **overrides: object) -> dict[str, object]:
    return app_config(tmp_path, PROMPTS_DIR=str(prompts), NOW=TODAY, **overrides)


def approve(app: Flask, *args: str) -> str:
    result = app.test_cli_runner().invoke(args=["content-approve", "--reviewer", REVIEWER, *args])
    assert result.exit_code == 0, result.output
    return result.output


def names(root: Path) -> list[str]:
    return [path.relative_to(root).as_posix() for path in prompt_files(root)]


def test_the_shipped_content_is_a_draft_no_one_has_approved() -> None:
    content = load_content()
    assert content.reviews and {review.status for review in content.reviews.values()} == {"draft"}
    assert not (PROMPTS_DIR / APPROVALS_FILE).exists() and not content.approvals
    for name, review in content.reviews.items():
        assert review.sources and all(source.date for source in review.sources), name
        assert review.next_review > review.reviewed_on, name
    # Every prompt file carries review data, the ones with 911/988 wording and promises included.
    assert {"en/voice.yaml", "en/sms.yaml", "en/hours.yaml", "en/urgent.yaml", "es/urgent.yaml"} <= set(content.reviews)
    assert set(content.reviews) == set(names(PROMPTS_DIR))


def test_draft_content_starts_with_one_warning_naming_every_file(
    tmp_path: Path, prompts: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="ivr"):
        create_app(config(tmp_path, prompts))
    warnings = [r.getMessage() for r in caplog.records if "not clinically approved" in r.getMessage()]
    assert len(warnings) == 1
    for name in names(prompts):
        assert f"{name} (status is draft)" in warnings[0]


def test_approve_edit_refuse_reapprove(tmp_path: Path, prompts: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Required, on draft content: the app refuses to start, naming each file and why.
    with pytest.raises(approval.ContentNotApproved) as refused:
        create_app(config(tmp_path, prompts, CONTENT_MUST_BE_APPROVED="1"))
    for name in names(prompts):
        assert f"{name} (status is draft" in str(refused.value)

    # A clinician approves every file: each file says so, and approvals.yaml holds its hash.
    output = approve(create_app(config(tmp_path, prompts)), "--all")
    assert sum(line.startswith("approved ") for line in output.splitlines()) == len(names(prompts))
    hospice = prompts / "en/sections/hospice.yaml"
    header = yaml.safe_load(hospice.read_text(encoding="utf-8"))
    assert header["status"] == "approved" and header["reviewed_by"] == REVIEWER
    assert header["reviewed_on"] == TODAY.date() and header["next_review"] == dt.date(2027, 12, 8)
    assert "# Review data" in hospice.read_text(encoding="utf-8"), "comments are kept"
    recorded = yaml.safe_load((prompts / APPROVALS_FILE).read_text(encoding="utf-8"))["approvals"]
    assert set(recorded) == set(names(prompts))
    assert recorded["en/sections/hospice.yaml"]["sha256"] == approval.file_sha256(hospice)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ivr"):
        app = create_app(config(tmp_path, prompts, CONTENT_MUST_BE_APPROVED="1"))
    assert not [r for r in caplog.records if "not clinically approved" in r.getMessage()]
    report = app.test_cli_runner().invoke(args=["content-report"]).output
    assert f"APPROVED by {REVIEWER} on 2026-12-08" in report and "0 of " in report

    # One word changed: that file, and only that file, is no longer approved.
    text = hospice.read_text(encoding="utf-8")
    hospice.write_text(text.replace("grief counseling", "grief support", 1), encoding="utf-8")
    with pytest.raises(approval.ContentNotApproved) as refused:
        create_app(config(tmp_path, prompts, CONTENT_MUST_BE_APPROVED="1"))
    message = str(refused.value)
    assert "1 prompt file(s)" in message
    assert f"en/sections/hospice.yaml (changed since {REVIEWER} approved it on 2026-12-08)" in message

    # Approved again, it starts again.
    approve(create_app(config(tmp_path, prompts)), "en/sections/hospice.yaml")
    create_app(config(tmp_path, prompts, CONTENT_MUST_BE_APPROVED="1"))

    # A year on, past next_review: refused again, every file due.
    later = dt.datetime(2027, 12, 9, tzinfo=dt.UTC)
    with pytest.raises(approval.ContentNotApproved) as refused:
        create_app(app_config(tmp_path, PROMPTS_DIR=str(prompts), NOW=later, CONTENT_MUST_BE_APPROVED="1"))
    assert "en/voice.yaml (review was due on 2027-12-08)" in str(refused.value)


def test_approved_in_the_file_but_not_recorded_is_not_approved(tmp_path: Path, prompts: Path) -> None:
    """Writing status: approved by hand is not a sign-off: the hash is recorded only by content-approve."""
    voice = prompts / "en/voice.yaml"
    voice.write_text(voice.read_text(encoding="utf-8").replace("status: draft", "status: approved", 1), "utf-8")
    content = load_content(prompts)
    (state,) = [s for s in approval.file_states(content, TODAY.date()) if s.path == "en/voice.yaml"]
    assert not state.approved and "not recorded in approvals.yaml" in state.problems[0]


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--reviewer", "Ana", "menu.yaml"], "NAME, CREDENTIAL"),
        (["--reviewer", REVIEWER], "name the files"),
        (["--reviewer", REVIEWER, "en/nothing.yaml"], "not prompt files"),
        (["--reviewer", REVIEWER, "--next-review", "2026-01-01", "menu.yaml"], "after today"),
    ],
)
def test_content_approve_refuses_what_is_not_a_sign_off(
    tmp_path: Path, prompts: Path, args: list[str], problem: str
) -> None:
    app = create_app(config(tmp_path, prompts))
    result = app.test_cli_runner().invoke(args=["content-approve", *args])
    assert result.exit_code != 0 and problem in result.output
    assert not (prompts / APPROVALS_FILE).exists()


def test_a_file_missing_its_review_data_does_not_load(prompts: Path) -> None:
    path = prompts / "en/sms.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("next_review: 2027-12-07\n", "", 1), "utf-8")
    with pytest.raises(ContentError, match=r"en/sms\.yaml.*next_review"):
        load_content(prompts)


def test_the_staff_page_shows_a_banner_while_content_is_unapproved(tmp_path: Path, prompts: Path) -> None:
    app = make_app(tmp_path, PROMPTS_DIR=str(prompts), NOW=TODAY)
    add_staff(app)
    client = app.test_client()
    assert sign_in(client).status_code == 303
    html = client.get("/staff/").get_data(as_text=True)
    assert "Health content not clinically approved" in html and 'role="alert"' in html
    assert "en/sections/hospice.yaml</strong>: status is draft" in html

    approve(app, "--all")
    approved = make_app(tmp_path, PROMPTS_DIR=str(prompts), NOW=TODAY)
    client = approved.test_client()
    assert sign_in(client).status_code == 303
    assert "not clinically approved" not in client.get("/staff/").get_data(as_text=True)
