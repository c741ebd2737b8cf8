"""`flask --app ivr twilio-setup`: point the line's Twilio number (or Messaging Service) at this deployment.

Through Twilio's REST API with the `twilio` client and the line's own credentials (TWILIO_ACCOUNT_SID and
TWILIO_AUTH_TOKEN), it sets on the number LINE_NUMBER (found through IncomingPhoneNumbers):

- "A call comes in": POST {PUBLIC_BASE_URL}/voice, its fallback ("Primary handler fails") POST .../voice/fallback,
  and "Call status changes": POST .../voice/status;
- "A message comes in": POST .../sms, its fallback POST .../sms/fallback;
- no TwiML app or SIP trunk for calls or texts (either one makes Twilio ignore the number's own URLs).

With --messaging-service MG..., texts go where the Messaging Service says, not to the number's own SMS URL:
the service's inbound request URL and fallback URL are set instead (and "use the number's webhook" turned off),
the number is added to the service if it is not in it, and the number's SMS settings are left alone.

--check reads every setting back and names each difference (exit 1 if any); --dry-run says what would change
and changes nothing. A problem reaching the account (credentials, unknown number or service, network) is
said plainly and exits 2. Secrets are never printed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import click
import requests
from flask import current_app
from flask.cli import with_appcontext
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.rest import Client

from ivr import outbound_texts
from ivr.config import E164, is_loopback_ip

MESSAGING_SERVICE_SID = re.compile(r"^MG[0-9a-fA-F]{32}$")

#: Exit codes: the settings differ (--check), or the account could not be read or changed at all.
DIFFERENT, FAILED = 1, 2

T = TypeVar("T")


@dataclass(frozen=True)
class Wanted:
    """One setting the line needs: the resource field (as Twilio names it), its value, and its name in plain words."""

    field: str
    value: str | bool
    what: str


def number_settings(base_url: str, fallback_base_url: str, texts_on_the_number: bool) -> list[Wanted]:
    """What the phone number needs; its SMS settings only when texts come to the number itself."""
    wanted = [
        Wanted("voice_url", f"{base_url}/voice", '"A call comes in" URL'),
        Wanted("voice_method", "POST", '"A call comes in" method'),
        Wanted("voice_fallback_url", f"{fallback_base_url}/voice/fallback", 'calls\' "Primary handler fails" URL'),
        Wanted("voice_fallback_method", "POST", 'calls\' "Primary handler fails" method'),
        Wanted("status_callback", f"{base_url}/voice/status", '"Call status changes" URL'),
        Wanted("status_callback_method", "POST", '"Call status changes" method'),
        Wanted("voice_application_sid", "", "TwiML app for calls (it would replace the URLs above)"),
        Wanted("trunk_sid", "", "SIP trunk for calls (it would replace the URLs above)"),
    ]
    if texts_on_the_number:
        wanted += [
            Wanted("sms_url", f"{base_url}/sms", '"A message comes in" URL'),
            Wanted("sms_method", "POST", '"A message comes in" method'),
            Wanted("sms_fallback_url", f"{fallback_base_url}/sms/fallback", 'texts\' "Primary handler fails" URL'),
            Wanted("sms_fallback_method", "POST", 'texts\' "Primary handler fails" method'),
            Wanted("sms_application_sid", "", "TwiML app for texts (it would replace the URLs above)"),
        ]
    return wanted


def service_settings(base_url: str, fallback_base_url: str) -> list[Wanted]:
    """What a Messaging Service needs so that texts to its numbers reach the line."""
    return [
        Wanted("inbound_request_url", f"{base_url}/sms", "incoming messages' request URL"),
        Wanted("inbound_method", "POST", "incoming messages' request method"),
        Wanted("fallback_url", f"{fallback_base_url}/sms/fallback", "incoming messages' fallback URL"),
        Wanted("fallback_method", "POST", "incoming messages' fallback method"),
        Wanted(
            "use_inbound_webhook_on_number",
            False,
            "\"Defer to sender's webhook\" (on, it would send texts to the number's own SMS URL instead)",
        ),
    ]


@dataclass(frozen=True)
class Difference:
    """A setting whose value on Twilio is not the one the line needs."""

    where: str
    wanted: Wanted
    now: str | bool
    #: Plain words for a difference that is not a value (a number missing from a Messaging Service).
    said: str = ""

    def __str__(self) -> str:
        if self.said:
            return f"{self.where}: {self.said}"
        return f"{self.where}: {self.wanted.what} is {shown(self.now)}; the line needs {shown(self.wanted.value)}"

    def change(self) -> str:
        """The change that puts it right, in plain words."""
        if self.said:
            return str(self)
        return f"{self.where}: {self.wanted.what}: {shown(self.now)} -> {shown(self.wanted.value)}"


def shown(value: str | bool) -> str:
    """A setting's value in plain words."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return value if value else "not set"


def differences(where: str, resource: Mapping[str, Any], wanted: list[Wanted]) -> list[Difference]:
    """Each wanted setting `resource` does not have (Twilio's null counts as not set)."""
    found = []
    for setting in wanted:
        now = resource.get(setting.field)
        now = bool(now) if isinstance(setting.value, bool) else (now or "")
        if now != setting.value:
            found.append(Difference(where, setting, now))
    return found


class SetupFailed(click.ClickException):
    """The account could not be read or changed: said in plain words, exit code 2."""

    exit_code = FAILED


def _calling_twilio(what: str, action: Callable[[], T]) -> T:
    """Run one REST call; turn Twilio's and the network's errors into a plain SetupFailed."""
    try:
        return action()
    except (TwilioRestException, TwilioException) as error:
        status = _http_status(error)
        if status is None:
            host = urlsplit(outbound_texts.twilio_api_base()).hostname
            raise SetupFailed(f"Could not reach Twilio's API at {host} for {what} ({type(error).__name__}).") from None
        if status == 401:
            raise SetupFailed(
                "Twilio refused the account's credentials (HTTP 401): check TWILIO_ACCOUNT_SID and "
                "TWILIO_AUTH_TOKEN (the token is the account's own, in the console under Account info)."
            ) from None
        if status == 404:
            raise SetupFailed(f"Twilio has no {what} on this account (HTTP 404).") from None
        detail = f", error {error.code}: {error.msg}" if isinstance(error, TwilioRestException) else ""
        raise SetupFailed(f"Twilio refused {what}: HTTP {status}{detail}") from None
    except requests.RequestException as error:
        host = urlsplit(outbound_texts.twilio_api_base()).hostname
        raise SetupFailed(f"Could not reach Twilio's API at {host} for {what} ({type(error).__name__}).") from None


def _http_status(error: TwilioException) -> int | None:
    """The HTTP status Twilio answered with, or None when no answer came.

    A fetch or update raises TwilioRestException with the status; a list raises a plain TwilioException
    ("Unable to fetch page") with the response as its second argument.
    """
    if isinstance(error, TwilioRestException):
        return error.status
    response = error.args[1] if len(error.args) > 1 else None
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def _record(instance: Any, wanted: list[Wanted]) -> dict[str, Any]:
    """The wanted fields of a fetched resource, by name."""
    return {setting.field: getattr(instance, setting.field, None) for setting in wanted}


def _find_number(client: Client, phone_number: str) -> Any:
    """The account's IncomingPhoneNumber for `phone_number`."""
    listed = _calling_twilio(
        f"phone number {phone_number}", lambda: client.incoming_phone_numbers.list(phone_number=phone_number, limit=20)
    )
    for number in listed:
        if number.phone_number == phone_number:
            return number
    raise SetupFailed(
        f"The number {phone_number} is not one of this Twilio account's numbers (Phone Numbers > Active numbers "
        "in the console): check LINE_NUMBER (or --number) and TWILIO_ACCOUNT_SID."
    )


@dataclass
class Plan:
    """What twilio-setup found: each resource's differences and how to change them."""

    differences: list[Difference]
    changes: list[tuple[str, Callable[[], object]]]


def plan(client: Client, phone_number: str, base_url: str, fallback_base_url: str, service_sid: str | None) -> Plan:
    """Read the number (and the Messaging Service) and work out every change the line needs."""
    number = _find_number(client, phone_number)
    where = f"Number {phone_number}"
    wanted = number_settings(base_url, fallback_base_url, texts_on_the_number=service_sid is None)
    found = differences(where, _record(number, wanted), wanted)
    sms_app = number.sms_application_sid or ""
    if service_sid is None and sms_app.upper().startswith("MG"):
        raise SetupFailed(
            f"Texts to {phone_number} are handled by the Messaging Service {sms_app}: run again with "
            f"--messaging-service {sms_app} (the service's inbound settings replace the number's own SMS URL)."
        )
    result = Plan(found, [])
    if found:
        changes = {difference.wanted.field: difference.wanted.value for difference in found}
        result.changes.append((where, lambda: client.incoming_phone_numbers(number.sid).update(**changes)))
    if service_sid is not None:
        _plan_service(client, result, number, service_sid, base_url, fallback_base_url)
    return result


def _plan_service(
    client: Client, result: Plan, number: Any, service_sid: str, base_url: str, fallback_base_url: str
) -> None:
    """Add the Messaging Service's differences and changes to `result`."""
    service = client.messaging.v1.services(service_sid)
    what = f"Messaging Service {service_sid}"
    fetched = _calling_twilio(what, service.fetch)
    wanted = service_settings(base_url, fallback_base_url)
    found = differences(what, _record(fetched, wanted), wanted)
    result.differences += found
    if found:
        changes = {difference.wanted.field: difference.wanted.value for difference in found}
        result.changes.append((what, lambda: service.update(**changes)))
    members = _calling_twilio(f"the numbers of {what}", lambda: service.phone_numbers.list(limit=400))
    if not any(member.sid == number.sid for member in members):
        membership = Wanted("phone_numbers", number.phone_number, "its numbers")
        said = f"the number {number.phone_number} is not in it; the line adds it (texts to it reach the service then)"
        result.differences.append(Difference(what, membership, "", said))
        result.changes.append((what, lambda: service.phone_numbers.create(phone_number_sid=number.sid)))


def _public_base_url(config: Mapping[str, Any], fallback_base_url: str | None) -> tuple[str, str]:
    """PUBLIC_BASE_URL and the fallback base, refused when Twilio could not reach them."""
    base_url = config["PUBLIC_BASE_URL"]
    if not base_url:
        raise SetupFailed("Set PUBLIC_BASE_URL to the line's public https address, like https://line.example.org.")
    fallback = (fallback_base_url or base_url).rstrip("/")
    for url in (base_url, fallback):
        parts = urlsplit(url)
        if parts.scheme != "https" and not config.get("TWILIO_API_BASE_URL"):
            raise SetupFailed(f"Twilio can only reach the line at a public https address, not {url}.")
        if parts.scheme not in ("https", "http") or not parts.hostname or parts.query or parts.fragment:
            raise SetupFailed(f"{url} is not a base URL like https://line.example.org.")
        if is_loopback_ip(parts.hostname) and not config.get("TWILIO_API_BASE_URL"):
            raise SetupFailed(f"Twilio cannot reach {url}: it is this machine's own address.")
    return base_url, fallback


@click.command("twilio-setup")
@click.option("--check", is_flag=True, help="Only read the settings back and name each difference (exit 1 if any).")
@click.option("--dry-run", is_flag=True, help="Say what would change; change nothing.")
@click.option("--number", "phone_number", default=None, help="The line's Twilio number (default LINE_NUMBER).")
@click.option(
    "--messaging-service",
    "service_sid",
    default=None,
    help="MG... SID of the Messaging Service that takes the number's texts: its inbound URLs are set instead.",
)
@click.option(
    "--fallback-base-url",
    default=None,
    help="Base URL of the fallback URLs, e.g. a second deployment (default PUBLIC_BASE_URL).",
)
@with_appcontext
def twilio_setup_command(
    check: bool, dry_run: bool, phone_number: str | None, service_sid: str | None, fallback_base_url: str | None
) -> None:
    """Point the line's Twilio number (or Messaging Service) at PUBLIC_BASE_URL; --check compares only."""
    config = current_app.config
    phone_number = (phone_number or config["LINE_NUMBER"] or "").strip()
    if not phone_number:
        raise SetupFailed("Set LINE_NUMBER to the line's Twilio number, like +15551234567 (or give --number).")
    if not E164.match(phone_number):
        raise SetupFailed(f"{phone_number!r} is not an E.164 number like +15551234567.")
    if service_sid is not None and not MESSAGING_SERVICE_SID.match(service_sid):
        raise SetupFailed(f"{service_sid!r} is not a Messaging Service SID (MG and 32 hexadecimal digits).")
    base_url, fallback = _public_base_url(config, fallback_base_url)
    client = outbound_texts.twilio_client()
    if client is None:
        raise SetupFailed("Set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (the account's, from the Twilio console).")

    found = plan(client, phone_number, base_url, fallback, service_sid)
    settings_count = len(number_settings(base_url, fallback, service_sid is None))
    if service_sid:
        settings_count += len(service_settings(base_url, fallback)) + 1
    options = f" --messaging-service {service_sid}" if service_sid else ""
    options += f" --fallback-base-url {fallback}" if fallback != base_url else ""
    if not found.differences:
        click.echo(f"All {settings_count} settings already point at {base_url}: nothing to change.")
        return
    if check:
        click.echo(f"{len(found.differences)} of {settings_count} settings differ from what the line needs:")
        for difference in found.differences:
            click.echo(f"  - {difference}")
        click.echo(f"Run `flask --app ivr twilio-setup{options}` to set them.")
        raise SystemExit(DIFFERENT)
    verb = "Would change" if dry_run else "Changing"
    for difference in found.differences:
        click.echo(f"{verb}: {difference.change()}")
    if dry_run:
        click.echo("Nothing changed (--dry-run).")
        return
    for where, change in found.changes:
        _calling_twilio(f"the change to {where}", change)
    click.echo(
        f"Done: {len(found.differences)} settings changed. `flask --app ivr twilio-setup --check{options}` reads "
        "them back."
    )
