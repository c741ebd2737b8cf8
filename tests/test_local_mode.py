"""Local mode that shows everything (issue 16, item 7): `make run`'s `python -m ivr` with no Twilio account
serves a stand-in for Twilio's REST API and rings a local staff phone, so "text me", 0 and voice messages all
work, and what the stand-in is sent shows in the terminal and on the staff page. Real processes: the line
as `make run` starts it (LOCAL_MODE=1, nothing else set) and the local phone as a person runs it."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from ivr import create_app, local_line
from ivr.content import load_content
from ivr.phone import DEFAULT_CALLER
from ivr.services import services
from ivr.storage import callback_requests
from tests.conftest import app_config
from tests.helpers.servers import REPO, LineServer, run_phone
from tests.helpers.servers import local_line as start_local_line
from tests.helpers.staff_support import STAFF_PASSWORD, create_staff, sign_in

pytestmark = pytest.mark.slow

EN = load_content().language("en")


@pytest.fixture(scope="module")
def line(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LineServer]:
    server = start_local_line(tmp_path_factory.mktemp("make-run"), {})
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def staff(line: LineServer) -> requests.Session:
    """A staff member signed in, with an account made as the banner says: `flask --app ivr create-staff`."""
    made = subprocess.run(
        [str(Path(sys.executable).with_name("flask")), "--app", "ivr", "create-staff", "nurse.ana"],
        input=f"{STAFF_PASSWORD}\n{STAFF_PASSWORD}\n",
        cwd=REPO,
        env=line.environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    session = requests.Session()
    form = session.get(f"{line.url}/staff/login", timeout=10).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert token
    signed_in = session.post(
        f"{line.url}/staff/login",
        data={"username": "nurse.ana", "password": STAFF_PASSWORD, "csrf_token": token.group(1)},
        timeout=10,
    )
    assert signed_in.status_code == 200 and signed_in.url.endswith("/staff/")
    return session


def call(line: LineServer, keys: str) -> str:
    finished = run_phone("call", "--url", line.url, "--keys", keys)
    assert finished.returncode == 0, finished.stdout + finished.stderr + line.log()
    return finished.stdout


def test_the_banner_says_where_the_staff_page_is_and_how_to_make_a_login(line: LineServer) -> None:
    banner = line.log()
    assert f"Staff page: {line.url}/staff" in banner
    assert "flask --app ivr create-staff" in banner
    assert "Twilio stand-in (no account needed): http://127.0.0.1:" in banner
    assert f"0 rings {local_line.LOCAL_STAFF_PHONE}" in banner


def test_text_me_reaches_the_stand_in_and_shows_in_the_terminal_and_on_the_staff_page(
    line: LineServer, staff: requests.Session
) -> None:
    heard = call(line, "5 2 hangup")
    assert " ".join(EN.say("text_sent").split()) in " ".join(heard.split())
    masked = local_line.masked(DEFAULT_CALLER)
    assert f"[Twilio stand-in] text sent to {masked}: HOSPICE AND END-OF-LIFE CARE" in line.log()
    assert DEFAULT_CALLER not in line.log()  # the terminal shows the number masked
    page = staff.get(f"{line.url}/staff/local", timeout=10)
    assert page.status_code == 200
    assert masked in page.text and "HOSPICE AND END-OF-LIFE CARE" in page.text
    assert DEFAULT_CALLER not in page.text


def test_0_rings_the_local_staff_phone_and_the_staff_member_takes_the_call(line: LineServer) -> None:
    heard = call(line, "5 0 dial:accept")
    assert f"{local_line.LOCAL_STAFF_PHONE} answers and hears the whisper" in heard
    assert "you talk with staff" in heard
    assert " ".join(EN.say("staff_unavailable").split()) not in " ".join(heard.split())


def test_a_voice_message_left_on_the_local_phone_plays_on_the_staff_page(
    line: LineServer, staff: requests.Session
) -> None:
    call(line, '5 0 dial:no-answer 1 record "Please call me back about hospice." #')
    page = staff.get(f"{line.url}/staff", timeout=10).text
    sources = re.findall(r'<audio[^>]* src="(/staff/requests/\d+/recording)"', page)
    assert sources, page
    played = staff.get(line.url + sources[0], timeout=10)
    assert played.status_code == 200
    assert played.headers["Content-Type"] == "audio/mpeg"
    assert played.content[:2] == b"\xff\xfb"  # an MP3 frame
    assert "[Twilio stand-in] voice message RE" in line.log()


def test_the_local_phone_reports_each_call_s_end_for_the_picture_of_the_line(
    line: LineServer, staff: requests.Session
) -> None:
    call(line, "5 hangup")  # the local phone sends Twilio's call status callback when a call ends
    page = staff.get(f"{line.url}/staff/line", timeout=10).text
    ended = re.search(r"Where calls end: (\d+) calls in all", page)
    assert ended and int(ended.group(1)) >= 1, page
    assert '<tr data-key="section">' in page  # hung up while hearing a section


def test_a_missing_twilio_account_is_said_in_plain_words_with_the_setting_to_set(tmp_path: Path) -> None:
    app = create_app(app_config(tmp_path, LOCAL_MODE=1, TWILIO_ACCOUNT_SID=""))
    create_staff(app)
    client = app.test_client()
    sign_in(client)
    row = {"created_at": dt.datetime.now(dt.UTC), "channel": "voice", "kind": "voicemail", "phone": DEFAULT_CALLER}
    row.update(topic="hospice", lang="en", urgent=False, note="", status="open", recording_seconds=5)
    row.update(recording_sid="RE" + "1" * 32, recording_url="")
    with app.app_context(), services().storage.engine.begin() as connection:
        request_id = connection.execute(callback_requests.insert().values(**row)).inserted_primary_key[0]
    answer = client.get(f"/staff/requests/{request_id}/recording")
    assert answer.status_code == 503
    html = answer.get_data(as_text=True)
    assert "Voice messages cannot be played here yet" in html
    assert "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN" in html
    # The queue page says the same of texting, naming the settings.
    queue = client.get("/staff/").get_data(as_text=True)
    assert "Texting is not set up on this line yet" in queue and "TWILIO_ACCOUNT_SID" in queue
    # Outside `make run`, the local texts page is no page at all.
    assert client.get("/staff/local").status_code == 200  # local mode, but no stand-in: says how to get one
    assert "No stand-in for Twilio is running" in client.get("/staff/local").get_data(as_text=True)


def test_the_local_texts_page_is_only_in_local_mode(tmp_path: Path) -> None:
    app = create_app(app_config(tmp_path))
    create_staff(app)
    client = app.test_client()
    sign_in(client)
    assert client.get("/staff/local").status_code == 404
    assert "Texts sent (local mode)" not in client.get("/staff/").get_data(as_text=True)


def test_numbers_are_masked_to_their_first_two_and_last_four_characters() -> None:
    assert local_line.masked("+15555550100") == "+1...0100"
    assert local_line.masked("+1234") == "..."
    assert local_line.masked("") == ""
