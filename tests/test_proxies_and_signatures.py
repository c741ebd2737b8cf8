"""Signatures on every Twilio route, behind proxies too; constant-time comparison; Content-Type and size."""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from twilio import request_validator

from ivr import create_app, security
from ivr.config import ConfigError
from tests.conftest import app_config
from tests.helpers.support import CALLER, LINE_NUMBER, sign

FORM = {"CallSid": "CA" + "1" * 32, "From": CALLER, "To": LINE_NUMBER}
INTERNAL = {"base_url": "http://10.0.0.5:8000"}  # what the app sees behind the proxy


def proxied_app(tmp_path: Path, **settings: Any) -> Flask:
    return create_app(app_config(tmp_path, PUBLIC_BASE_URL="", **settings))


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


def test_forwarded_headers_are_ignored_unless_proxies_are_trusted(tmp_path: Path) -> None:
    public = "https://line.example.org/voice"
    headers = {
        "X-Twilio-Signature": sign(public, FORM),
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "line.example.org",
        "X-Forwarded-For": "54.172.60.1",
    }
    untrusting = proxied_app(tmp_path / "a").test_client()
    assert untrusting.post("/voice", data=FORM, headers=headers, **INTERNAL).status_code == 403
    trusting = proxied_app(tmp_path / "b", TRUSTED_PROXY_HOPS=1).test_client()
    assert trusting.post("/voice", data=FORM, headers=headers, **INTERNAL).status_code == 200
    # Without the proxy's headers the internal URL is what counts, and Twilio never signed that.
    bare = {"X-Twilio-Signature": sign(public, FORM)}
    assert trusting.post("/voice", data=FORM, headers=bare, **INTERNAL).status_code == 403


def test_only_the_trusted_number_of_hops_is_believed(tmp_path: Path) -> None:
    """A client's own X-Forwarded-Host comes first in the list; one trusted proxy's value comes last."""
    app = proxied_app(tmp_path, TRUSTED_PROXY_HOPS=1)
    client = app.test_client()
    spoofed = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example, line.example.org"}
    good = sign("https://line.example.org/voice", FORM)
    evil = sign("https://evil.example/voice", FORM)
    for signature, status in ((good, 200), (evil, 403)):
        headers = {**spoofed, "X-Twilio-Signature": signature}
        assert client.post("/voice", data=FORM, headers=headers, **INTERNAL).status_code == status
    two = proxied_app(tmp_path / "two", TRUSTED_PROXY_HOPS=2).test_client()
    chain = {"X-Forwarded-Proto": "https, http", "X-Forwarded-Host": "line.example.org, lb.internal"}
    assert two.post("/voice", data=FORM, headers={**chain, "X-Twilio-Signature": good}, **INTERNAL).status_code == 200


def test_public_base_url_wins_over_forwarded_headers(tmp_path: Path) -> None:
    app = create_app(app_config(tmp_path, TRUSTED_PROXY_HOPS=1))  # PUBLIC_BASE_URL https://line.example.org
    headers = {"X-Forwarded-Host": "evil.example", "X-Twilio-Signature": sign("https://line.example.org/voice", FORM)}
    assert app.test_client().post("/voice", data=FORM, headers=headers, **INTERNAL).status_code == 200


def test_local_mode_behind_a_trusted_proxy_judges_the_client_not_the_proxy(tmp_path: Path) -> None:
    app = create_app(app_config(tmp_path, TWILIO_AUTH_TOKEN="", SECRET_KEY="", TRUSTED_PROXY_HOPS=1))
    client = app.test_client()
    local = {"REMOTE_ADDR": "127.0.0.1"}
    for client_address, status in (("203.0.113.9", 403), ("127.0.0.1", 200)):
        headers = {"X-Forwarded-For": client_address}
        assert client.post("/voice", data=FORM, environ_base=local, headers=headers).status_code == status


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
    response = client.post("/sms", data=b'{"Body": "STOP"}', content_type="application/json",
                           headers={"X-Twilio-Signature": signature})
    assert response.status_code == 415
    assert client.post("/sms", headers={"X-Twilio-Signature": signature}).status_code == 200  # empty: still a form


def test_a_body_too_large_is_refused_before_it_is_read(app: Flask) -> None:
    response = app.test_client().post("/sms", data={"Body": "x" * 70_000})
    assert response.status_code == 413
