"""Only Twilio drives the line: signatures checked with the real RequestValidator, 403 otherwise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from twilio.request_validator import RequestValidator
from werkzeug.datastructures import MultiDict

from ivr import create_app
from ivr.security import request_is_from_twilio
from tests.conftest import app_config
from tests.helpers.support import PUBLIC_BASE_URL, sign

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


def test_without_a_token_the_line_answers_only_this_machine(tmp_path: Path) -> None:
    app = create_app(app_config(tmp_path, TWILIO_AUTH_TOKEN="", SECRET_KEY=""))
    client = app.test_client()
    assert client.post("/voice", data=FORM, environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 200
    assert client.post("/voice", data=FORM, environ_base={"REMOTE_ADDR": "::1"}).status_code == 200
    assert client.post("/voice", data=FORM, environ_base={"REMOTE_ADDR": "192.0.2.7"}).status_code == 403


def test_local_mode_says_so_at_start(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    create_app(app_config(tmp_path, TWILIO_AUTH_TOKEN="", SECRET_KEY=""))
    assert any("Local mode" in record.getMessage() for record in caplog.records)


def test_get_is_not_a_webhook(client: FlaskClient) -> None:
    assert client.get("/voice").status_code == 405


def test_token_outside_local_mode_needs_a_secret_key(tmp_path: Path) -> None:
    from ivr.config import ConfigError

    with pytest.raises(ConfigError, match="SECRET_KEY"):
        create_app(app_config(tmp_path, SECRET_KEY=""))

