"""Send texts through Twilio's REST API (used when a caller asks for a section by text).

The `twilio` client builds an absolute URL for each product (https://api.twilio.com/2010-04-01/...
for messages) and hands it to its HTTP client. With TWILIO_API_BASE_URL set (tests and local runs
only; the setting accepts loopback addresses only, since the credentials go along), the HTTP client
below keeps each URL's path and query and swaps its scheme and host, so the real client, with its
real request building and response parsing, talks to a stand-in on this machine.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

import requests
from flask import current_app
from twilio.base.exceptions import TwilioException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from ivr import resilience, text_dialog, usage
from ivr.services import Services

log = logging.getLogger(__name__)

SendResult = Literal["sent", "failed", "opted_out", "no_number"]

#: Seconds to wait for Twilio's API: the caller is on hold meanwhile, and Twilio waits 15 s for TwiML.
API_TIMEOUT_SECONDS = 8.0


class BaseUrlHttpClient(TwilioHttpClient):
    """The `twilio` HTTP client, sending every request to `base_url` instead of *.twilio.com."""

    def __init__(self, base_url: str, timeout: float = API_TIMEOUT_SECONDS) -> None:
        super().__init__(timeout=timeout)
        self.base_url = base_url.rstrip("/")

    def url_for(self, url: str) -> str:
        """`url` with the scheme and host (and any path prefix) of `base_url`."""
        base = urlsplit(self.base_url)
        target = urlsplit(url)
        return urlunsplit((base.scheme, base.netloc, base.path + target.path, target.query, ""))

    def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        """Send the request the client built to the same path on `base_url`."""
        return super().request(method, self.url_for(url), params, data, headers, auth, timeout, allow_redirects)


#: Where Twilio's REST API lives unless TWILIO_API_BASE_URL says otherwise.
TWILIO_API = "https://api.twilio.com"


def twilio_api_base() -> str:
    """The base URL of Twilio's REST API for this app: TWILIO_API_BASE_URL, or Twilio's own."""
    return current_app.config.get("TWILIO_API_BASE_URL") or TWILIO_API


def twilio_client() -> Client | None:
    """A REST client for the configured account, or None when the line has no Twilio credentials."""
    config = current_app.config
    if not (config.get("TWILIO_ACCOUNT_SID") and config.get("TWILIO_AUTH_TOKEN")):
        return None
    base_url = config.get("TWILIO_API_BASE_URL", "")
    http_client = BaseUrlHttpClient(base_url) if base_url else TwilioHttpClient(timeout=API_TIMEOUT_SECONDS)
    return Client(config["TWILIO_ACCOUNT_SID"], config["TWILIO_AUTH_TOKEN"], http_client=http_client)


def send_section(svc: Services, to: str, from_: str, section: str, lang: str) -> SendResult:
    """Text `section`'s messages to `to`, unless that number opted out; say how it went."""
    if not to.startswith("+") or not from_:
        return "no_number"
    # An opt-out that only the spool knows yet counts too; with the database away the answer is
    # unknown, and a text nobody may want is not sent.
    opted_out = resilience.guard().spool.pending().opt_outs.get(svc.storage.phone_hash(to))
    if opted_out is None:
        opted_out = resilience.guard().read(partial(svc.storage.is_opted_out, to), None, "checking an opt-out")
    if opted_out is None:
        return "failed"
    if opted_out:
        return "opted_out"
    client = twilio_client()
    if client is None:
        return "failed"
    bodies = text_dialog.whole_section(svc.content, lang, section)
    try:
        for body in bodies:
            client.messages.create(to=to, from_=from_, body=body)
    except (TwilioException, requests.RequestException) as error:
        # The error names neither the number nor the text.
        log.warning("Could not send a section by text: %s", type(error).__name__)
        return "failed"
    database = resilience.guard()
    usage.count(svc.usage, database, "sms", section)
    # Replies from this number then come in the caller's language, and MORE knows all was sent.
    save = partial(svc.storage.save_text_conversation, to, lang, section, len(bodies))
    database.try_write(save, "saving a conversation")
    return "sent"
