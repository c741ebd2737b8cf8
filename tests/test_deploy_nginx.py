"""deploy/nginx/careline.conf, filled in, in front of gunicorn: TLS, X-Forwarded-*, limits, HSTS, signatures.

nginx runs as the user running the tests, with its own prefix, pid file and logs in the test's folder, a
self-signed certificate for 127.0.0.1, and the line (gunicorn, TRUSTED_PROXY_HOPS=1) on another loopback port.
Twilio signs the URL it requested: with PUBLIC_BASE_URL https://127.0.0.1:<nginx port>, a request signed for
that URL is answered and one signed for any other is refused.
"""

from __future__ import annotations

import datetime as dt
import getpass
import http.client
import ipaddress
import os
import re
import shutil
import signal
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ivr import MAX_REQUEST_BYTES, create_app
from ivr.phone import free_port
from tests.conftest import app_config
from tests.helpers.databases import upgraded
from tests.helpers.servers import LineServer, line_environment
from tests.helpers.staff_support import STAFF_PASSWORD, create_staff, csrf_token
from tests.helpers.support import CALLER, LINE_NUMBER, sign

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "deploy" / "nginx" / "careline.conf"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
TWILIO_TIMEOUT_SECONDS = 15


def render_site(values: dict[str, str]) -> str:
    """The site file with each __PLACEHOLDER__ replaced, as docs/deploying.md's sed command does."""
    text = SITE.read_text(encoding="utf-8")
    for name, value in values.items():
        text = text.replace(f"__{name}__", value)
    left = re.findall(r"__[A-Z][A-Z_]*[A-Z]__", text)
    assert not left, f"placeholders the test does not fill: {left}"
    return text


def test_the_site_keeps_under_twilios_timeout_and_the_lines_body_limit() -> None:
    text = SITE.read_text(encoding="utf-8")
    timeouts = dict(re.findall(r"^\s*(proxy_\w+_timeout|client_\w+_timeout)\s+(\d+)s;", text, re.MULTILINE))
    assert set(timeouts) >= {"proxy_connect_timeout", "proxy_send_timeout", "proxy_read_timeout"}
    assert all(int(seconds) < TWILIO_TIMEOUT_SECONDS for seconds in timeouts.values()), timeouts
    size = re.search(r"client_max_body_size\s+(\d+)k;", text)
    assert size is not None and int(size.group(1)) * 1024 == MAX_REQUEST_BYTES
    assert {"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host"} <= set(
        re.findall(r"proxy_set_header\s+(X-Forwarded-\w+)", text)
    )
    assert "Strict-Transport-Security" in text


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate and key for 127.0.0.1, valid for a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    return cert_path, key_path


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


@dataclass
class Proxied:
    """nginx on `https_port` (and `http_port`) in front of the line on `line.port`."""

    https_port: int
    http_port: int
    context: ssl.SSLContext
    line: LineServer
    folder: Path

    @property
    def public_url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> Reply:
        connection = http.client.HTTPSConnection("127.0.0.1", self.https_port, context=self.context, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return Reply(response.status, response.headers, response.read())
        finally:
            connection.close()

    def webhook(self, path: str, form: dict[str, str], signed_for: str) -> Reply:
        headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": sign(signed_for, form)}
        return self.request("POST", path, urlencode(form).encode(), headers)


def start_nginx(folder: Path, site: str) -> subprocess.Popen[bytes]:
    """nginx in the foreground as this user: its own prefix, pid, temp folders and logs under `folder`."""
    (folder / "logs").mkdir()
    (folder / "careline.conf").write_text(site)
    user = f"user {getpass.getuser()};" if os.geteuid() == 0 else ""  # as root, workers would be "nobody"
    temp = "\n".join(
        f"    {kind}_temp_path {folder / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (folder / "nginx.conf").write_text(
        f"""{user}
worker_processes 1;
pid {folder / "nginx.pid"};
error_log {folder / "logs" / "error.log"} warn;
events {{ worker_connections 64; }}
http {{
{temp}
    include {folder / "careline.conf"};
}}
"""
    )
    command = [
        str(NGINX),
        "-p",
        str(folder),
        "-c",
        str(folder / "nginx.conf"),
        "-e",
        str(folder / "logs" / "early.log"),
    ]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr
    return subprocess.Popen([*command, "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"nginx exited: {process.stderr.read().decode() if process.stderr else ''}")
        try:
            http.client.HTTPConnection("127.0.0.1", port, timeout=1).connect()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port} after {timeout} s")


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[Proxied]:
    """One line and one nginx for the module's tests: each start costs seconds on a loaded machine."""
    tmp_path = tmp_path_factory.mktemp("nginx-site")
    shutil.copyfile(sqlite_template, tmp_path / "line.sqlite3")  # migrated, as after `db upgrade`
    if NGINX is None:
        missing = "nginx is not installed (.ci/run installs Debian's nginx; apt-get install nginx)"
        if os.environ.get("CI"):
            pytest.fail(missing)  # CI installs it: a skip there would hide an untested proxy
        pytest.skip(missing)
    cert, key = self_signed_certificate(tmp_path)
    https_port, http_port = free_port(), free_port()
    database_url = upgraded(f"sqlite:///{tmp_path / 'line.sqlite3'}")
    public_url = f"https://127.0.0.1:{https_port}"
    # The staff account, made by the line's own command code on the same database, before gunicorn starts.
    staff_app = create_app(app_config(tmp_path, DATABASE_URL=database_url, PUBLIC_BASE_URL=public_url))
    create_staff(staff_app)
    staff_app.extensions["careline"].storage.dispose()

    environ = line_environment(database_url, PUBLIC_BASE_URL=public_url, TRUSTED_PROXY_HOPS="1")
    line = LineServer(environ, tmp_path / "line.log")
    nginx = None
    try:
        line.wait_until_ready()
        site = render_site(
            {
                "SERVER_NAME": "127.0.0.1",
                "HTTPS_PORT": str(https_port),
                "HTTP_PORT": str(http_port),
                "CERTIFICATE": str(cert),
                "CERTIFICATE_KEY": str(key),
                "UPSTREAM": f"127.0.0.1:{line.port}",
                "LOG_DIR": str(tmp_path / "nginx" / "logs"),
            }
        )
        (tmp_path / "nginx").mkdir()
        nginx = start_nginx(tmp_path / "nginx", site)
        wait_for_port(https_port, nginx)
        context = ssl.create_default_context(cafile=str(cert))
        yield Proxied(https_port, http_port, context, line, tmp_path / "nginx")
    finally:
        if nginx is not None:
            nginx.send_signal(signal.SIGQUIT)  # graceful: workers finish, then the master exits
            try:
                nginx.wait(timeout=15)
            except subprocess.TimeoutExpired:
                nginx.kill()
                nginx.wait()
        line.stop()


def call_form() -> dict[str, str]:
    return {"CallSid": "CA" + "e" * 32, "From": CALLER, "To": LINE_NUMBER, "CallStatus": "ringing"}


def text_form() -> dict[str, str]:
    return {"MessageSid": "SM" + "e" * 32, "From": CALLER, "To": LINE_NUMBER, "Body": "MENU"}


@pytest.mark.slow
def test_webhooks_through_nginx_are_checked_against_the_public_url(proxied: Proxied) -> None:
    for path, form in (("/voice", call_form()), ("/sms", text_form())):
        answered = proxied.webhook(path, form, signed_for=proxied.public_url + path)
        assert answered.status == 200, (path, answered.body[:200])
        assert answered.body.startswith(b"<?xml") and b"<Response>" in answered.body
        assert answered.headers["Strict-Transport-Security"] == "max-age=63072000; includeSubDomains"
        assert answered.headers["Server"] == "nginx"  # no version (server_tokens off)

        # Signed for another address: the one gunicorn listens on, or the same host over plain http.
        for other in (f"http://127.0.0.1:{proxied.line.port}", f"http://127.0.0.1:{proxied.https_port}"):
            refused = proxied.webhook(path, form, signed_for=other + path)
            assert refused.status == 403, (path, other)
        unsigned = proxied.request(
            "POST", path, urlencode(form).encode(), {"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert unsigned.status == 403


@pytest.mark.slow
def test_nginx_limits_and_redirects(proxied: Proxied) -> None:
    too_big = proxied.request("POST", "/sms", b"x" * (MAX_REQUEST_BYTES + 1), {"Content-Type": "text/plain"})
    assert too_big.status == 413

    wrong_host = proxied.request("GET", "/healthz", headers={"Host": "evil.example.org"})
    assert wrong_host.status == 421

    plain = http.client.HTTPConnection("127.0.0.1", proxied.http_port, timeout=10)
    plain.request("GET", "/voice?x=1")
    redirect = plain.getresponse()
    assert redirect.status == 301
    assert redirect.getheader("Location") == "https://127.0.0.1/voice?x=1"
    plain.close()

    # The access log has the path without its query string, and no caller's number.
    proxied.webhook("/sms", text_form(), signed_for=proxied.public_url + "/sms")
    access_log = proxied.folder / "logs" / "careline.access.log"
    # nginx writes the log line after it has sent the answer: wait for it rather than race it.
    deadline = time.monotonic() + 10
    log = access_log.read_text()
    while " POST /sms 200 " not in log and time.monotonic() < deadline:
        time.sleep(0.05)
        log = access_log.read_text()
    assert " POST /sms 200 " in log and "x=1" not in log
    assert CALLER not in log and CALLER.lstrip("+") not in log


@pytest.mark.slow
def test_staff_sign_in_through_nginx_gets_a_secure_cookie(proxied: Proxied) -> None:
    form_page = proxied.request("GET", "/staff/login")
    assert form_page.status == 200
    session = form_page.headers["Set-Cookie"]
    assert "Secure" in session and "HttpOnly" in session
    cookie = session.split(";", 1)[0]
    body = urlencode(
        {"csrf_token": csrf_token(form_page.body.decode()), "username": "nurse.ana", "password": STAFF_PASSWORD}
    ).encode()
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Cookie": cookie,
        "Origin": proxied.public_url,
        "Referer": proxied.public_url + "/staff/login",
    }
    signed_in = proxied.request("POST", "/staff/login", body, headers)
    assert signed_in.status == 303, signed_in.body[:300]
    assert "Secure" in signed_in.headers["Set-Cookie"] and "HttpOnly" in signed_in.headers["Set-Cookie"]
    assert signed_in.headers["Location"].rstrip("/").endswith("/staff")
    queue = proxied.request("GET", "/staff", headers={"Cookie": signed_in.headers["Set-Cookie"].split(";", 1)[0]})
    assert queue.status == 200
    assert queue.headers["Strict-Transport-Security"].startswith("max-age=")
