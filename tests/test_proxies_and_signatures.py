"""Signatures on every Twilio route, behind proxies too; constant-time comparison; Content-Type and size."""

from __future__ import annotations

import hmac
from pathlib import Path
from urllib.parse import unquote

import pytest
from flask import Flask, request
from twilio import request_validator

from ivr import create_app, security
from ivr.config import ConfigError
from tests.conftest import app_config
from tests.helpers.databases import upgraded
from tests.helpers.servers import LineServer, http_post, line_environment, local_line
from tests.helpers.support import AUTH_TOKEN, CALLER, LINE_NUMBER, PUBLIC_BASE_URL, sign

FORM = {"CallSid": "CA" + "1" * 32, "From": CALLER, "To": LINE_NUMBER}
INTERNAL = {"base_url": "http://10.0.0.5:8000"}  # what the app sees behind the proxy


def test_every_voice_and_sms_route_is_a_signed_twilio_route(app: Flask) -> None:
    """No webhook without @twilio_only: every POST route under /voice and /sms carries its mark."""
    routes = [rule for rule in app.url_map.iter_rules() if rule.rule.startswith(("/voice", "/sms"))]
    assert len(routes) >= 8
    client = app.test_client()
    for rule in routes:
        view = app.view_functions[rule.endpoint]
        assert getattr(view, "twilio_signed", False), rule.rule
        path = rule.rule.replace("<name>", "hospice")
        assert client.post(path, data=FORM).status_code == 403, path
        elsewhere = {"X-Twilio-Signature": sign("https://x" + path, FORM)}
        assert client.post(path, data=FORM, headers=elsewhere).status_code == 403


@pytest.mark.parametrize("hops", [0, 1, 2])
def test_forwarded_host_and_proto_never_change_the_signed_url(tmp_path: Path, hops: int) -> None:
    """Issue 15 item 12: however many proxies are trusted (for the client's address), Twilio's signature is
    checked against PUBLIC_BASE_URL, so a client's X-Forwarded-Host or -Proto cannot choose the URL."""
    client = create_app(app_config(tmp_path, TRUSTED_PROXY_HOPS=hops)).test_client()
    forwarded = {"X-Forwarded-Proto": "https, https", "X-Forwarded-Host": "evil.example, evil.example"}
    genuine = sign("https://line.example.org/voice", FORM)
    chosen = sign("https://evil.example/voice", FORM)
    internal = sign("http://10.0.0.5:8000/voice", FORM)
    for signature, status in ((genuine, 200), (chosen, 403), (internal, 403)):
        headers = {**forwarded, "X-Twilio-Signature": signature}
        assert client.post("/voice", data=FORM, headers=headers, **INTERNAL).status_code == status


def test_trusted_proxies_give_the_client_address(tmp_path: Path) -> None:
    """TRUSTED_PROXY_HOPS still names the client (for the staff page's sign-in limits): the last hops' value."""
    app = create_app(app_config(tmp_path, TRUSTED_PROXY_HOPS=1))
    app.add_url_rule("/test/client-address", "client_address", lambda: request.remote_addr or "")
    forwarded = {"X-Forwarded-For": "198.51.100.1, 203.0.113.9"}
    proxy = {"REMOTE_ADDR": "10.0.0.2"}
    response = app.test_client().get("/test/client-address", headers=forwarded, environ_base=proxy)
    assert response.get_data(as_text=True) == "203.0.113.9"


def test_public_base_url_wins_over_forwarded_headers(tmp_path: Path) -> None:
    app = create_app(app_config(tmp_path, TRUSTED_PROXY_HOPS=1))  # PUBLIC_BASE_URL https://line.example.org
    headers = {"X-Forwarded-Host": "evil.example", "X-Twilio-Signature": sign("https://line.example.org/voice", FORM)}
    assert app.test_client().post("/voice", data=FORM, headers=headers, **INTERNAL).status_code == 200


@pytest.mark.parametrize("hops", ["-1", "6", "two"])
def test_trusted_proxy_hops_must_be_0_to_5(tmp_path: Path, hops: str) -> None:
    with pytest.raises(ConfigError, match="TRUSTED_PROXY_HOPS"):
        create_app(app_config(tmp_path, TRUSTED_PROXY_HOPS=hops))


def test_signatures_are_compared_in_constant_time(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every comparison is constant-time (hmac.compare_digest, or the twilio library's compare), with
    and without the URL's default port."""
    calls: list[tuple[str, str]] = []
    compare_digest, compare = hmac.compare_digest, request_validator.compare

    def spy_digest(a: bytes, b: bytes) -> bool:
        calls.append(("hmac", b.decode()))
        return compare_digest(a, b)

    def spy(a: str, b: str) -> bool:
        calls.append(("twilio", b))
        return compare(a, b)

    monkeypatch.setattr(security.hmac, "compare_digest", spy_digest)
    monkeypatch.setattr(request_validator, "compare", spy)
    client = app.test_client()
    good = sign("https://line.example.org/voice", FORM)
    assert client.post("/voice", data=FORM, headers={"X-Twilio-Signature": good}).status_code == 200
    assert calls == [("hmac", good)]  # the URL as signed: one comparison settles it
    calls.clear()
    assert client.post("/voice", data=FORM, headers={"X-Twilio-Signature": good[::-1]}).status_code == 403
    assert calls == [("hmac", good[::-1])] + [("twilio", good[::-1])] * 2, "then with and without :443"
    with_port = sign("https://line.example.org:443/voice", FORM)
    assert client.post("/voice", data=FORM, headers={"X-Twilio-Signature": with_port}).status_code == 200
    assert client.post("/voice", data=FORM, headers={"X-Twilio-Signature": "é" + good[1:]}).status_code == 403


def test_a_signed_request_that_is_not_a_form_gets_415(app: Flask) -> None:
    client = app.test_client()
    signature = sign("https://line.example.org/sms", {})
    response = client.post(
        "/sms", data=b'{"Body": "STOP"}', content_type="application/json", headers={"X-Twilio-Signature": signature}
    )
    assert response.status_code == 415
    assert client.post("/sms", headers={"X-Twilio-Signature": signature}).status_code == 200  # empty: still a form


def test_a_body_too_large_is_refused_before_it_is_read(app: Flask) -> None:
    response = app.test_client().post("/sms", data={"Body": "x" * 70_000})
    assert response.status_code == 413


RAW_PATH = "/voice/section/%68ospice?l=en&x=a%2Fb&y=a+b%20c"


@pytest.mark.slow
@pytest.mark.parametrize("server", ["gunicorn", "werkzeug"])
def test_a_genuine_signed_url_with_escapes_is_accepted_by_real_servers(tmp_path: Path, server: str) -> None:
    """Issue 15 item 12: gunicorn (`make serve`) and werkzeug's server (`python -m ivr`) both hand the raw
    request target to the check, so `%2F` in the query is signed as Twilio sent it."""
    database = f"sqlite:///{tmp_path / 'line.sqlite3'}"
    if server == "gunicorn":
        line = LineServer(line_environment(upgraded(database)), tmp_path / "line.log")
        line.wait_until_ready()
    else:
        line = local_line(tmp_path, {"TWILIO_AUTH_TOKEN": AUTH_TOKEN, "PUBLIC_BASE_URL": PUBLIC_BASE_URL})
    try:
        genuine = {"X-Twilio-Signature": sign(PUBLIC_BASE_URL + RAW_PATH, FORM)}
        assert http_post(line.port, RAW_PATH, FORM, genuine).status_code == 200, line.log()
        decoded = {"X-Twilio-Signature": sign(PUBLIC_BASE_URL + unquote(RAW_PATH), FORM)}
        assert http_post(line.port, RAW_PATH, FORM, decoded).status_code == 403
        by_host = {"X-Twilio-Signature": sign(line.url + RAW_PATH, FORM)}
        assert http_post(line.port, RAW_PATH, FORM, by_host).status_code == 403
    finally:
        line.stop()
