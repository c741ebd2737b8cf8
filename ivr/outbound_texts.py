"""Texts on demand, in one place: the policy (who may be texted a section, how often, how much) and
the sending, through Twilio's REST API (a caller who pressed 2, a staff member's "send by text").

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

import phonenumbers
import requests
from flask import current_app
from phonenumbers import PhoneNumberType
from twilio.base.exceptions import TwilioException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from ivr import metrics, resilience, text_dialog, usage
from ivr.config import E164
from ivr.services import Services, now
from ivr.storage import DailyCounter

log = logging.getLogger(__name__)

#: How a request to text a section went. A call hears one of the first six; "staff_over_limit" is the
#: staff member's own daily cap, for the staff page only.
SendResult = Literal["sent", "failed", "opted_out", "no_number", "already_sent", "over_limit", "staff_over_limit"]

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


# -- the policy: who may be texted, and how much --------------------------------------------------


#: The number types a text can reach. Refused: TOLL_FREE (a business or PBX line, and the classic
#: target of SMS pumping), PREMIUM_RATE, SHARED_COST, UAN, PAGER, PERSONAL_NUMBER, VOICEMAIL and VOIP.
#: In the US and Canada phonenumbers cannot tell mobile from landline (FIXED_LINE_OR_MOBILE), and it
#: marks as VOIP only ranges given to VoIP services alone; a person calling from one can still ask staff.
TEXTABLE_TYPES = frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE})


def textable(number: str, countries: tuple[str, ...]) -> bool:
    """Whether the line may text `number`: written as E.164 (digits only, so no "+1abc", "anonymous",
    "+" or keypad-spelled hidden caller ID without its "+"), a valid number of one of `countries`
    (TEXT_COUNTRIES) by the phonenumbers library, and of a type that takes texts (TEXTABLE_TYPES)."""
    if not E164.match(number):
        return False
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return False
    return (
        phonenumbers.is_valid_number(parsed)
        and phonenumbers.region_code_for_number(parsed) in countries
        and phonenumbers.number_type(parsed) in TEXTABLE_TYPES
    )


def _once_key(svc: Services, call_sid: str, section: str) -> str:
    """What the call's text of `section` is claimed under: the CallSid and section, both in the signed
    request (never the unsigned idempotency header), so a replay with a new token sends nothing."""
    return "text-once:" + svc.storage.key_hash("text-once", f"{call_sid}\x1f{section}")[:40]


def _counters(svc: Services, to: str, staff_user: str) -> list[DailyCounter]:
    """The daily caps a text to `to` counts against: the number's, and the staff member's if one sends it."""
    config = current_app.config
    counters = [DailyCounter("to:" + svc.storage.phone_hash(to)[:64], config["TEXT_DAILY_LIMIT"])]
    if staff_user:
        staff_key = "staff:" + svc.storage.key_hash("staff", staff_user)[:64]
        counters.append(DailyCounter(staff_key, config["STAFF_TEXT_DAILY_LIMIT"]))
    return counters


def send_section(
    svc: Services, to: str, from_: str, section: str, lang: str, *, call_sid: str = "", staff_user: str = ""
) -> SendResult:
    """Text `section`'s messages to `to`, if the policy allows; say how it went.

    The one way the line texts a person a section (a caller who pressed 2: `call_sid`; a staff member
    on the staff page: `staff_user`), in this order:

    1. `to` must be a textable number of TEXT_COUNTRIES (`textable`): else "no_number".
    2. Not opted out (STOP), in the database or the spool: else "opted_out".
    3. A call gets each section once (claimed under CallSid and section): else "already_sent".
    4. The whole section must fit today's caps (TEXT_DAILY_LIMIT for the number, from calls and staff
       together; STAFF_TEXT_DAILY_LIMIT for the staff member): else "over_limit" or "staff_over_limit".
       A section goes whole or not at all, and each message sent counts one (a message is at most
       sms_segments.MAX_SEGMENTS segments, so the segments billed are at most that many times the cap).
    Steps 3 and 4 are one transaction in the shared database; with the database away nothing is sent.
    Texts the API refused are given back to the caps, and a call whose section was not sent at all may
    ask again.
    """
    config = current_app.config
    if not from_ or not E164.match(to):
        return "no_number"  # not a number at all (a withheld caller ID)
    client = twilio_client()
    if client is None:
        return "failed"  # a line without a Twilio account texts nobody
    if not textable(to, config["TEXT_COUNTRIES"]):
        return "no_number"
    if not (call_sid or staff_user):
        return "failed"  # every text on demand is someone's: a call's or a staff member's
    # An opt-out that only the spool knows yet counts too; with the database away the answer is
    # unknown, and a text nobody may want is not sent.
    opted_out = resilience.guard().spool.pending().opt_outs.get(svc.storage.phone_hash(to))
    if opted_out is None:
        opted_out = resilience.guard().read(partial(svc.storage.is_opted_out, to), None, "checking an opt-out")
    if opted_out is None:
        return "failed"
    if opted_out:
        return "opted_out"
    bodies = text_dialog.whole_section(svc.content, lang, section)
    at = now()
    day = at.astimezone(svc.hours.timezone).date()  # the line's day, as staff count days
    counters = _counters(svc, to, staff_user)
    once = _once_key(svc, call_sid, section) if call_sid else ""
    database = resilience.guard()
    reserve = partial(svc.storage.reserve_texts, counters, day, len(bodies), once, at)
    reserved = database.read(reserve, None, "counting texts")
    if reserved is None:
        return "failed"
    if reserved == "already_sent":
        return "already_sent"
    if isinstance(reserved, DailyCounter):
        return "staff_over_limit" if reserved.key.startswith("staff:") else "over_limit"
    sent = 0
    try:
        for body in bodies:
            client.messages.create(to=to, from_=from_, body=body)
            sent += 1
            metrics.texts_sent("api")
    except (TwilioException, requests.RequestException) as error:
        # The error names neither the number nor the text.
        log.warning("Could not send a section by text: %s", type(error).__name__)
    if sent < len(bodies):
        release = partial(svc.storage.release_texts, counters, day, len(bodies) - sent, once, sent == 0)
        database.try_write(release, "giving back unsent texts")
        if sent == 0:
            return "failed"
    usage.count(svc.usage, database, "sms", section)
    # Replies from this number then come in the caller's language, and MORE knows all was sent.
    save = partial(svc.storage.save_text_conversation, to, lang, section, len(bodies))
    database.try_write(save, "saving a conversation")
    return "sent"
