"""Only Twilio drives the line: signatures checked with the real RequestValidator, 403 otherwise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from twilio.request_validator import RequestValidator
from werkzeug.datastructures import MultiDict

from ivr import create_app, phone
from ivr.config import ConfigError
from ivr.security import public_url, request_is_from_twilio
from tests.conftest import app_config
from tests.helpers.servers import REPO
from tests.helpers.support import AUTH_TOKEN, PUBLIC_BASE_URL, sign

VECTORS = json.loads((Path(__file__).parent / "data" / "x-twilio-signature-vectors.json").read_text())
FORM = {"CallSid": "CA1234567890ABCDE", "From": "+15551230001", "To": "+15559870000"}


def webhook_paths(app: Flask) -> list[str]:
    """Every Twilio-facing route, with sample values for its placeholders."""
    paths = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith(("voice.", "sms.")) and "POST" in (rule.methods or set()):
            paths.append(rule.rule.replace("<name>", "hospice"))
    return sorted(paths)


def vector_params(vector: dict) -> MultiDict:
    if vector.get("params") == "PARAMS":
        return MultiDict(VECTORS["params"])
    return MultiDict(vector.get("params_list", []))


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=[v["name"][:40] for v in VECTORS["vectors"]])
def test_known_answer_vectors(vector: dict) -> None:
    """Our check accepts Twilio's published signatures, for the URL forms the vectors cover."""
    params = vector_params(vector)
    validator = RequestValidator(VECTORS["auth_token"])
    url = vector.get("validate_against_url", vector["url"])
    assert validator.validate(url, params, vector["signature"]) is vector.get("expect_valid", True)
    if "body" in vector:
        return
    # The same check through the line's own code: a Flask request behind PUBLIC_BASE_URL.
    app = Flask("vectors")
    app.config.update(TWILIO_AUTH_TOKEN=VECTORS["auth_token"])
    scheme_host, _, path = url.partition("://")[2].partition("/")
    base = url.split("://")[0] + "://" + scheme_host
    app.config["PUBLIC_BASE_URL"] = base
    with app.test_request_context(
        "/" + path, method="POST", data=params, headers={"X-Twilio-Signature": vector["signature"]}
    ):
        from flask import request

        assert request_is_from_twilio(request)
    with app.test_request_context("/" + path, method="POST", data=params, headers={"X-Twilio-Signature": "AAAA"}):
        from flask import request

        assert not request_is_from_twilio(request)


def test_every_webhook_refuses_a_missing_or_wrong_signature(app: Flask) -> None:
    client = app.test_client()
    paths = webhook_paths(app)
    assert "/voice" in paths and "/voice/step" in paths
    for path in paths:
        good = sign(PUBLIC_BASE_URL + path, FORM)
        assert client.post(path, data=FORM).status_code == 403, path
        assert client.post(path, data=FORM, headers={"X-Twilio-Signature": "x" + good}).status_code == 403, path
        wrong_token = sign(PUBLIC_BASE_URL + path, FORM, token="not-the-token")
        assert client.post(path, data=FORM, headers={"X-Twilio-Signature": wrong_token}).status_code == 403
        tampered = dict(FORM, From="+15550000000")
        assert client.post(path, data=tampered, headers={"X-Twilio-Signature": good}).status_code == 403, path
        assert client.post(path, data=FORM, headers={"X-Twilio-Signature": good}).status_code == 200, path


def test_a_signature_for_the_internal_url_is_refused_behind_a_proxy(app: Flask) -> None:
    """Behind a proxy Twilio signs the public URL; the URL Flask sees must not be trusted instead."""
    client = app.test_client()
    internal = sign("http://localhost/voice", FORM)
    assert client.post("/voice", data=FORM, headers={"X-Twilio-Signature": internal}).status_code == 403


def test_the_query_string_is_part_of_what_is_signed(app: Flask) -> None:
    client = app.test_client()
    path = "/voice/step?n=section&l=en&s=hospice&p=0"
    signature = sign(PUBLIC_BASE_URL + path, dict(FORM, Digits="1"))
    ok = client.post(path, data=dict(FORM, Digits="1"), headers={"X-Twilio-Signature": signature})
    assert ok.status_code == 200
    moved = client.post(
        path.replace("hospice", "treatment"), data=dict(FORM, Digits="1"), headers={"X-Twilio-Signature": signature}
    )
    assert moved.status_code == 403


def local_app(tmp_path: Path, **settings: Any) -> Flask:
    """A line in local mode, as `make run` serves it: LOCAL_MODE=1, no token, no secret key."""
    return create_app(app_config(tmp_path, LOCAL_MODE="1", TWILIO_AUTH_TOKEN="", SECRET_KEY="", **settings))


def test_in_local_mode_the_line_answers_only_this_machine(tmp_path: Path) -> None:
    client = local_app(tmp_path).test_client()
    assert client.post("/voice", data=FORM, environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 200
    assert client.post("/voice", data=FORM, environ_base={"REMOTE_ADDR": "::1"}).status_code == 200
    assert client.post("/voice", data=FORM, environ_base={"REMOTE_ADDR": "192.0.2.7"}).status_code == 403
    assert client.get("/staff/login", environ_base={"REMOTE_ADDR": "192.0.2.7"}).status_code == 403


def test_local_mode_says_so_at_start(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    local_app(tmp_path)
    assert any("Local mode" in record.getMessage() for record in caplog.records)


def test_without_a_token_the_line_refuses_to_start_unless_local_mode_is_asked_for(tmp_path: Path) -> None:
    """Issue 15 item 8: a missing TWILIO_AUTH_TOKEN no longer means local mode by itself."""
    with pytest.raises(ConfigError) as refused:
        create_app(app_config(tmp_path, TWILIO_AUTH_TOKEN=""))
    assert "TWILIO_AUTH_TOKEN" in str(refused.value) and "LOCAL_MODE=1" in str(refused.value)
    with pytest.raises(ConfigError, match="LOCAL_MODE"):
        create_app(app_config(tmp_path, TWILIO_AUTH_TOKEN="", LOCAL_MODE="0"))


@pytest.mark.parametrize("value", ["yes", "2", "on", "-1"])
def test_local_mode_is_1_or_0(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="LOCAL_MODE"):
        create_app(app_config(tmp_path, LOCAL_MODE=value))


@pytest.mark.parametrize(
    "header",
    ["X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Port", "X-Forwarded-Prefix", "Forwarded"],
)
def test_local_mode_refuses_any_request_carrying_forwarded_headers(tmp_path: Path, header: str) -> None:
    """Behind a proxy on this machine every client would look like 127.0.0.1: local mode refuses proxied requests."""
    client = local_app(tmp_path).test_client()
    proxied = {header: "203.0.113.5"}
    assert client.post("/voice", data=FORM, headers=proxied).status_code == 403
    assert client.post("/sms", data={**FORM, "Body": "HELP"}, headers=proxied).status_code == 403
    assert client.get("/staff/login", headers=proxied).status_code == 403
    assert client.get("/healthz", headers=proxied).status_code == 403
    assert client.post("/voice", data=FORM).status_code == 200  # the same request, straight from this machine
    assert client.get("/staff/login").status_code == 200


def test_local_mode_and_trusted_proxies_do_not_mix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="TRUSTED_PROXY_HOPS"):
        local_app(tmp_path, TRUSTED_PROXY_HOPS=1)


def test_local_mode_may_keep_a_token_for_the_twilio_api_but_checks_no_signature(tmp_path: Path) -> None:
    """LOCAL_MODE=1 decides: a token set beside it is only the REST client's (a stand-in API on this machine)."""
    app = create_app(app_config(tmp_path, LOCAL_MODE="1", PUBLIC_BASE_URL=""))
    client = app.test_client()
    assert client.post("/voice", data=FORM).status_code == 200
    assert client.post("/voice", data=FORM, environ_base={"REMOTE_ADDR": "192.0.2.7"}).status_code == 403
    assert app.config["SESSION_COOKIE_SECURE"] is False


def test_production_needs_a_public_base_url(tmp_path: Path) -> None:
    """Issue 15 item 12: outside local mode the signed URL is never built from the client's Host header."""
    with pytest.raises(ConfigError, match="PUBLIC_BASE_URL"):
        create_app(app_config(tmp_path, PUBLIC_BASE_URL=""))


@pytest.mark.parametrize(
    "url",
    [
        "http://line.example.org",
        "http://localhost:5000",
        "http://127.0.0.1.nip.io",
        "ftp://line.example.org",
        "https://line.example.org/?x=1",
        "https://line.example.org/#x",
        "https://user@line.example.org",
        "line.example.org",
    ],
)
def test_public_base_url_is_https_or_plain_http_on_this_machine(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigError, match="PUBLIC_BASE_URL"):
        create_app(app_config(tmp_path, PUBLIC_BASE_URL=url))


@pytest.mark.parametrize(
    "url",
    ["https://line.example.org", "https://line.example.org/careline/", "http://127.0.0.1:5000", "http://[::1]:8080"],
)
def test_public_base_urls_the_line_accepts(tmp_path: Path, url: str) -> None:
    app = create_app(app_config(tmp_path, PUBLIC_BASE_URL=url))
    path = "/voice/step?n=menu&l=en"
    signature = sign(url.rstrip("/") + path, FORM)
    assert app.test_client().post(path, data=FORM, headers={"X-Twilio-Signature": signature}).status_code == 200


def test_the_host_header_never_counts(app: Flask) -> None:
    client = app.test_client()
    genuine = sign(PUBLIC_BASE_URL + "/voice", FORM)
    for host in ("evil.example", "localhost", "line.example.org"):
        chosen = sign(f"http://{host}/voice", FORM)
        headers = {"Host": host}
        assert client.post("/voice", data=FORM, headers={**headers, "X-Twilio-Signature": chosen}).status_code == 403
        assert client.post("/voice", data=FORM, headers={**headers, "X-Twilio-Signature": genuine}).status_code == 200


@pytest.mark.parametrize(
    "query",
    ["x=a%2Fb", "x=a%2fb&y=%3D", "x=a+b&y=a%20b", "x=%C3%A9", "x=%7E~", "x=a%26b"],
)
def test_the_raw_query_twilio_requested_is_what_is_signed(app: Flask, query: str) -> None:
    """Twilio signs the URL byte for byte as it requested it: `%2F` stays `%2F`, `+` stays `+`."""
    path = f"/voice/step?n=menu&l=en&{query}"
    signature = sign(PUBLIC_BASE_URL + path, FORM)
    response = app.test_client().post(path, data=FORM, headers={"X-Twilio-Signature": signature})
    assert response.status_code == 200


def test_the_raw_path_twilio_requested_is_what_is_signed(app: Flask) -> None:
    """An escaped character in the path is signed escaped, as Twilio requested it (not as Flask decoded it)."""
    path = "/voice/section/%68ospice?l=en"
    signature = sign(PUBLIC_BASE_URL + path, FORM)
    response = app.test_client().post(path, data=FORM, headers={"X-Twilio-Signature": signature})
    assert response.status_code == 200
    decoded = sign(PUBLIC_BASE_URL + "/voice/section/hospice?l=en", FORM)
    assert app.test_client().post(path, data=FORM, headers={"X-Twilio-Signature": decoded}).status_code == 403


def test_without_a_raw_uri_from_the_server_the_path_is_quoted_again(app: Flask) -> None:
    """A WSGI server that gives no RAW_URI/REQUEST_URI: the decoded path, quoted again, plus QUERY_STRING."""
    from flask import request

    app.config["TWILIO_AUTH_TOKEN"] = AUTH_TOKEN
    path = "/voice/step?n=menu&x=a%2Fb"
    with app.test_request_context(path, method="POST", data=FORM):
        request.environ.pop("RAW_URI")
        request.environ.pop("REQUEST_URI")
        assert public_url(request, PUBLIC_BASE_URL) == PUBLIC_BASE_URL + path
    with app.test_request_context("/voice/section/hospice%20care", method="POST", data=FORM):
        request.environ.pop("RAW_URI")
        request.environ.pop("REQUEST_URI")
        assert public_url(request, PUBLIC_BASE_URL) == PUBLIC_BASE_URL + "/voice/section/hospice%20care"


def test_get_is_not_a_webhook(client: FlaskClient) -> None:
    assert client.get("/voice").status_code == 405


def test_token_outside_local_mode_needs_a_secret_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        create_app(app_config(tmp_path, SECRET_KEY=""))


@pytest.mark.slow
def test_python_m_ivr_without_settings_refuses_to_start_and_says_what_to_set() -> None:
    """Issue 15 item 8: no token and no LOCAL_MODE: a clear message naming both, not a traceback."""
    started = subprocess.run(
        [sys.executable, "-m", "ivr"],
        cwd=REPO,
        env=phone.line_environment({}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode != 0
    assert "TWILIO_AUTH_TOKEN" in started.stderr and "LOCAL_MODE=1" in started.stderr
    assert "Traceback" not in started.stderr


def test_make_run_asks_for_local_mode() -> None:
    """`make run` serves the line in local mode (and LOCAL_MODE=0 make run would not)."""
    dry_run = subprocess.run(["make", "-n", "run"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert "LOCAL_MODE=1 .venv/bin/python -m ivr" in dry_run
    dry_run = subprocess.run(
        ["make", "-n", "run"], cwd=REPO, env={**os.environ, "LOCAL_MODE": "0"}, capture_output=True, text=True
    ).stdout
    assert "LOCAL_MODE=0 .venv/bin/python -m ivr" in dry_run
