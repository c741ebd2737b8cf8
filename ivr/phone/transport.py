"""How the local phone reaches the line: HTTP or a Flask test client, requests signed as Twilio signs them."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlencode, urljoin, urlsplit

from twilio.request_validator import RequestValidator

API_VERSION = "2010-04-01"
#: Fictional numbers (555-0100 to 555-0199 are set aside for fiction, and valid by the phonenumbers
#: library, so the local line may text the caller): the caller and the line's own number.
DEFAULT_CALLER = "+12025550100"
DEFAULT_LINE_NUMBER = "+12025550199"
DEFAULT_ACCOUNT_SID = "AC" + "0" * 32


def new_sid(prefix: str) -> str:
    """A Twilio-shaped SID: two letters and 32 hex digits."""
    return prefix + secrets.token_hex(16)


def short_url(url: str) -> str:
    """The path and query of `url`: how a request reads in a transcript."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


@dataclass(frozen=True)
class Answer:
    """The line's HTTP answer to one request."""

    status: int
    content_type: str
    body: str


class Transport(Protocol):
    """Sends one webhook request to the line."""

    base_url: str

    def send(self, method: str, url: str, form: Mapping[str, str], headers: Mapping[str, str]) -> Answer:
        """Send `form` (already in the URL for GET) and return the answer; raise OSError when unreachable."""
        ...


class HttpTransport:
    """Requests to a line served over HTTP (`make run`, gunicorn, a deployment)."""

    def __init__(self, base_url: str, timeout: float = 15.0) -> None:
        import requests  # imported here: the in-process phone does not need it

        self.base_url = base_url.rstrip("/")
        self._session = requests.Session()
        # A line on this machine is reached directly, whatever HTTP(S)_PROXY says.
        host = urlsplit(self.base_url).hostname or ""
        if host in ("localhost", "::1") or host.startswith("127."):
            self._session.trust_env = False
        self._timeout = timeout
        self._errors: tuple[type[BaseException], ...] = (requests.RequestException,)

    def send(self, method: str, url: str, form: Mapping[str, str], headers: Mapping[str, str]) -> Answer:
        try:
            response = self._session.request(
                method,
                url,
                data=dict(form) if method == "POST" else None,
                headers=dict(headers),
                timeout=self._timeout,
                allow_redirects=False,
            )
        except self._errors as error:
            raise OSError(str(error)) from error
        content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        return Answer(response.status_code, content_type, response.text)


class AppTransport:
    """Requests to a Flask app in this process, through its test client (no network at all)."""

    base_url = "http://127.0.0.1"

    def __init__(self, app: Any) -> None:
        self._client = app.test_client()

    def send(self, method: str, url: str, form: Mapping[str, str], headers: Mapping[str, str]) -> Answer:
        response = self._client.open(
            url, method=method, data=dict(form) if method == "POST" else None, headers=dict(headers)
        )
        return Answer(response.status_code, (response.mimetype or "").lower(), response.get_data(as_text=True))


@dataclass(frozen=True)
class Signer:
    """Signs requests as Twilio does: X-Twilio-Signature over the public URL and the POSTed fields."""

    token: str = ""
    public_base_url: str = ""

    def url_to_sign(self, url: str) -> str:
        """The URL Twilio would have requested: behind a proxy, PUBLIC_BASE_URL replaces scheme and host."""
        if not self.public_base_url:
            return url
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        return self.public_base_url.rstrip("/") + path

    def headers(self, method: str, url: str, form: Mapping[str, str]) -> dict[str, str]:
        """Headers Twilio sends with a webhook request."""
        headers = {
            "User-Agent": "TwilioProxy/1.1",
            "Accept": "*/*",
            "I-Twilio-Idempotency-Token": secrets.token_hex(16),
        }
        if self.token:
            params = dict(form) if method == "POST" else {}
            headers["X-Twilio-Signature"] = RequestValidator(self.token).compute_signature(
                self.url_to_sign(url), params
            )
        return headers


class Requester:
    """Builds, signs and sends webhook requests; resolves relative URLs like Twilio."""

    def __init__(self, transport: Transport, signer: Signer) -> None:
        self.transport = transport
        self.signer = signer

    def absolute(self, url: str, relative_to: str = "") -> str:
        """`url` resolved against the URL of the document it came from (or the line's base URL)."""
        return urljoin(relative_to or self.transport.base_url + "/", url.strip())

    def request(self, method: str, url: str, form: Mapping[str, str]) -> tuple[str, Answer]:
        """Send `form` to `url` by `method` (GET puts the fields in the query, as Twilio does)."""
        method = method.upper()
        if method == "GET":
            url = url + ("&" if urlsplit(url).query else "?") + urlencode(dict(form))
            form = {}
        headers = self.signer.headers(method, url, form)
        if method == "POST":
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        return url, self.transport.send(method, url, form, headers)


@dataclass(frozen=True)
class PhoneSetup:
    """Who calls whom, how requests are signed, and how the line is reached."""

    transport: Transport
    signer: Signer = field(default_factory=Signer)
    caller_number: str = DEFAULT_CALLER
    line_number: str = DEFAULT_LINE_NUMBER
    account_sid: str = DEFAULT_ACCOUNT_SID
    #: Where the phone sends Twilio's call status callback when a call ends ("" none), as a number whose
    #: "Call status changes" is set does; `python -m ivr.phone call` sends it to /voice/status.
    status_callback: str = ""
