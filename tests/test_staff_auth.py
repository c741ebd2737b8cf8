"""The staff page is for staff only: sign-in, sessions, CSRF, the rate limit, the create-staff command, headers."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from ivr.services import services
from ivr.storage import login_attempts
from ivr.web import staff
from tests.helpers.staff_support import (
    OPEN_TIME,
    STAFF_PASSWORD,
    add_staff,
    create_staff,
    csrf_token,
    make_app,
    quick_password_hash,
    sign_in,
)
from tests.helpers.support import twilio_post

GET_URLS = ["/staff", "/staff/", "/staff/requests/1/recording"]
POST_URLS = ["/staff/requests/1/done", "/staff/requests/1/reopen", "/staff/send"]


@pytest.fixture
def staff_app(tmp_path: Path) -> Flask:
    app = make_app(tmp_path)
    add_staff(app)
    return app


def token_from_login_page(client: FlaskClient) -> str:
    return csrf_token(client.get("/staff/login").get_data(as_text=True))


@pytest.mark.parametrize("url", GET_URLS)
def test_every_staff_page_without_a_session_redirects_to_sign_in(staff_app: Flask, url: str) -> None:
    response = staff_app.test_client().get(url)
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/staff/login?next=")


@pytest.mark.parametrize("url", POST_URLS)
def test_every_staff_action_without_a_session_redirects_to_sign_in(staff_app: Flask, url: str) -> None:
    client = staff_app.test_client()
    token = token_from_login_page(client)  # a valid token, but nobody signed in
    response = client.post(url, data={"csrf_token": token, "phone": "+15551230001", "section": "hospice"})
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/staff/login")


def test_a_wrong_password_fails(staff_app: Flask) -> None:
    client = staff_app.test_client()
    response = sign_in(client, password="not the password at all")
    assert response.status_code == 401
    assert "That user name and password do not match." in response.get_data(as_text=True)
    assert client.get("/staff").status_code == 303


def test_an_unknown_user_fails_the_same_way(staff_app: Flask) -> None:
    response = sign_in(staff_app.test_client(), username="nobody", password=STAFF_PASSWORD)
    assert response.status_code == 401
    assert "That user name and password do not match." in response.get_data(as_text=True)


def test_the_right_password_signs_in_and_sign_out_ends_it(staff_app: Flask) -> None:
    client = staff_app.test_client()
    response = sign_in(client)
    assert response.status_code == 303 and response.headers["Location"] == "/staff/"
    page = client.get("/staff/")
    assert page.status_code == 200 and "Signed in as" in page.get_data(as_text=True)
    client.post("/staff/logout", data={"csrf_token": csrf_token(page.get_data(as_text=True))})
    assert client.get("/staff/").status_code == 303


def test_sign_in_returns_to_the_page_asked_for_but_never_to_another_site(staff_app: Flask) -> None:
    client = staff_app.test_client()
    token = token_from_login_page(client)
    form = {"username": "nurse.ana", "password": STAFF_PASSWORD, "csrf_token": token}
    response = client.post("/staff/login", data={**form, "next": "/staff/?x=1"})
    assert response.headers["Location"] == "/staff/?x=1"
    for target in ("https://evil.example/", "//evil.example/staff", "/staff\\..\\x"):
        client = staff_app.test_client()
        form["csrf_token"] = token_from_login_page(client)
        response = client.post("/staff/login", data={**form, "next": target})
        assert response.headers["Location"] == "/staff/"


@pytest.mark.parametrize(
    "target",
    [
        "/staff/\r\nSet-Cookie: x=1",  # header injection
        "/staff/\nx",
        "/staff/\x00",
        "/staff/\x1b[31m",  # any C0 control
        "/staff/\x7f",
        "/staff/\x85",  # C1: NEL
        "/staff/\u2028",  # a line separator some clients split on
        "/staff/\tx",
        "/staffing",  # not below /staff/
        "/staff/../login",
        "http:/staff/",
        "/staff/ x",
    ],
)
def test_a_next_page_with_control_characters_or_not_a_staff_path_falls_back_to_the_staff_page(
    staff_app: Flask, target: str
) -> None:
    """Issue 15 item 13: after sign-in a bad `next=` goes to /staff/, never a 500 or a split header."""
    client = staff_app.test_client()
    form = {"username": "nurse.ana", "password": STAFF_PASSWORD, "csrf_token": token_from_login_page(client)}
    response = client.post("/staff/login", data={**form, "next": target})
    assert response.status_code == 303
    assert response.headers["Location"] == "/staff/"
    assert client.get("/staff/login", query_string={"next": target}).status_code == 303  # signed in: GET too
    assert client.get("/staff/login", query_string={"next": target}).headers["Location"] == "/staff/"


def test_a_post_without_a_csrf_token_fails(staff_app: Flask) -> None:
    client = staff_app.test_client()
    response = client.post("/staff/login", data={"username": "nurse.ana", "password": STAFF_PASSWORD})
    assert response.status_code == 400
    assert "nothing was changed" in response.get_data(as_text=True)
    assert client.get("/staff").status_code == 303, "no session from a token-less sign-in"

    sign_in(client)
    with staff_app.app_context():
        services().storage.open_voice_message("CA1", "+15551230001", "hospice", "en")
        [request_id] = [row["id"] for row in services().storage.callback_requests()]
    refused = client.post(f"/staff/requests/{request_id}/done")
    assert refused.status_code == 400
    forged = client.post(f"/staff/requests/{request_id}/done", data={"csrf_token": "forged"})
    assert forged.status_code == 400
    with staff_app.app_context():
        assert services().storage.callback_requests()[0]["status"] == "open"


def test_twilio_webhooks_need_their_signature_not_a_csrf_token(staff_app: Flask) -> None:
    params = {"CallSid": "CA1", "From": "+15551230001", "To": "+15559870000"}
    assert twilio_post(staff_app.test_client(), "/voice", params).status_code == 200


ATTACKER = "203.0.113.66"
NURSE_AT_WORK = "198.51.100.20"


def client_at(app: Flask, address: str) -> FlaskClient:
    """A browser at `address` (as the app sees it: REMOTE_ADDR, or the address a trusted proxy gives)."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def test_failed_sign_ins_slow_that_name_from_that_address_but_never_lock_the_real_user_out(
    tmp_path: Path, database_url: str
) -> None:
    """Issue 15, item 5: 5 wrong passwords no longer lock the account against its own, right password."""
    staff_app = make_app(tmp_path, DATABASE_URL=database_url)
    add_staff(staff_app)
    attacker = client_at(staff_app, ATTACKER)
    for _ in range(5):
        assert sign_in(attacker, password="wrong password!").status_code == 401
    blocked = sign_in(attacker)  # from the attacker's address, even the right password waits now
    assert blocked.status_code == 429
    assert "Too many tries" in blocked.get_data(as_text=True)
    assert blocked.headers["Retry-After"] == "60"
    assert sign_in(client_at(staff_app, NURSE_AT_WORK)).status_code == 303, "the nurse signs in from work"

    # The count is in the database, so another app process sees it too.
    other_process = make_app(tmp_path, DATABASE_URL=database_url)
    assert sign_in(client_at(other_process, ATTACKER)).status_code == 429
    with staff_app.app_context():
        stored = services().storage.engine.connect().execute(sa.select(login_attempts.c.key_hash)).scalars().all()
    assert stored and all("nurse" not in key and "203" not in key for key in stored), "kept only as keyed hashes"

    # The wait doubles with every further failure: 1 minute, then 2, then 4.
    minute_later = make_app(tmp_path, DATABASE_URL=database_url, NOW=OPEN_TIME + dt.timedelta(seconds=60))
    assert sign_in(client_at(minute_later, ATTACKER), password="still wrong!!").status_code == 401
    assert sign_in(client_at(minute_later, ATTACKER)).headers["Retry-After"] == "120"
    three_minutes_later = make_app(tmp_path, DATABASE_URL=database_url, NOW=OPEN_TIME + dt.timedelta(seconds=179))
    assert sign_in(client_at(three_minutes_later, ATTACKER)).status_code == 429
    at_last = make_app(tmp_path, DATABASE_URL=database_url, NOW=OPEN_TIME + dt.timedelta(seconds=180))
    assert sign_in(client_at(at_last, ATTACKER)).status_code == 303


def test_failed_sign_ins_are_rate_limited_per_address(staff_app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    # Each unknown name is checked against the decoy hash, at full strength ~130 ms; here, where what counts
    # is the count, the decoy has the test accounts' cost (TEST_SCRYPT). test_an_unknown_user_fails_the_same_way
    # keeps the real one.
    monkeypatch.setattr(staff, "_decoy_hash", lambda: quick_password_hash("decoy password that matches nothing"))
    client = client_at(staff_app, ATTACKER)
    for number in range(20):
        assert sign_in(client, username=f"guess{number}", password="wrong password!").status_code == 401
    refused = sign_in(client)
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "900"
    assert sign_in(client_at(staff_app, NURSE_AT_WORK)).status_code == 303, "only that address is stopped"


def test_a_proxy_the_line_does_not_believe_is_warned_of_once(
    staff_app: Flask, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With TRUSTED_PROXY_HOPS=0 every client behind a proxy has the proxy's address: say so, once."""
    client = staff_app.test_client()
    client.get("/staff/login")
    assert "TRUSTED_PROXY_HOPS=0" not in caplog.text
    for _ in range(3):
        client.get("/staff/login", headers={"X-Forwarded-For": "203.0.113.5"})
    warnings = [r for r in caplog.records if "TRUSTED_PROXY_HOPS=0" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelname == "WARNING"
    assert "203.0.113.5" not in caplog.text

    caplog.clear()
    behind_a_believed_proxy = make_app(tmp_path, TRUSTED_PROXY_HOPS=1)
    behind_a_believed_proxy.test_client().get("/staff/login", headers={"X-Forwarded-For": "203.0.113.5"})
    assert "TRUSTED_PROXY_HOPS" not in caplog.text


def test_a_success_clears_the_user_names_failures(staff_app: Flask) -> None:
    client = staff_app.test_client()
    for _ in range(4):
        sign_in(client, password="wrong password!")
    assert sign_in(client).status_code == 303
    for _ in range(4):
        assert sign_in(staff_app.test_client(), password="wrong password!").status_code == 401
    assert sign_in(staff_app.test_client()).status_code == 303


def test_session_cookie_is_httponly_samesite_lax_and_secure_outside_local_mode(staff_app: Flask) -> None:
    cookie = sign_in(staff_app.test_client()).headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie


def test_local_mode_cookies_work_over_plain_http(tmp_path: Path) -> None:
    app = make_app(tmp_path, LOCAL_MODE="1", TWILIO_AUTH_TOKEN="")
    create_staff(app)
    cookie = sign_in(app.test_client()).headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "Secure" not in cookie


def test_staff_pages_send_security_headers(staff_app: Flask) -> None:
    client = staff_app.test_client()
    for response in (client.get("/staff/login"), client.get("/staff")):
        headers = response.headers
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "same-origin"
        assert headers["Cache-Control"] == "no-store"


def test_create_staff_checks_names_passwords_and_duplicates(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["create-staff", "nurse.bo"], input="short\nshort\n")
    assert result.exit_code != 0 and "at least 12 characters" in result.output
    result = runner.invoke(args=["create-staff", "bad name!"], input="")
    assert result.exit_code != 0
    create_staff(app, "nurse.bo")
    result = runner.invoke(args=["create-staff", "nurse.bo"], input=f"{STAFF_PASSWORD}\n{STAFF_PASSWORD}\n")
    assert result.exit_code != 0 and "already exists" in result.output
    with app.app_context():
        stored = services().storage.staff_user("nurse.bo")
    assert stored is not None and stored["password_hash"].startswith("scrypt:")
    assert STAFF_PASSWORD not in stored["password_hash"]


def test_a_new_password_ends_open_sessions(staff_app: Flask) -> None:
    client = staff_app.test_client()
    sign_in(client)
    assert client.get("/staff/").status_code == 200
    new_password = "a different long password"
    result = staff_app.test_cli_runner().invoke(
        args=["create-staff", "--reset", "nurse.ana"], input=f"{new_password}\n{new_password}\n"
    )
    assert result.exit_code == 0, result.output
    assert client.get("/staff/").status_code == 303
    assert sign_in(staff_app.test_client(), password=new_password).status_code == 303


def test_a_session_cookie_captured_before_sign_out_no_longer_works_after_it(tmp_path: Path, database_url: str) -> None:
    """Sign-out ends the session on the server (issue 15, item 9), not only in the browser that signed out."""
    app = make_app(tmp_path, DATABASE_URL=database_url)
    add_staff(app)
    client = app.test_client()
    sign_in(client)
    page = client.get("/staff/")
    assert page.status_code == 200
    captured = client.get_cookie("careline_session")
    assert captured is not None
    thief = app.test_client()
    thief.set_cookie("careline_session", captured.value)
    assert thief.get("/staff/").status_code == 200, "the copy works while the session is open"

    client.post("/staff/logout", data={"csrf_token": csrf_token(page.get_data(as_text=True))})
    assert client.get("/staff/").status_code == 303
    replayed = app.test_client()
    replayed.set_cookie("careline_session", captured.value)
    assert replayed.get("/staff/").status_code == 303, "the captured cookie is refused after sign-out"
    assert thief.get("/staff/").status_code == 303

    again = app.test_client()
    assert sign_in(again).status_code == 303 and again.get("/staff/").status_code == 200, "signing in again works"
