"""Only Twilio may drive the line: check X-Twilio-Signature on every webhook.

Outside local mode a request must carry a signature that the `twilio` library's RequestValidator
accepts for the URL Twilio requested (with or without the default port, compared in constant time by
the library). That URL is PUBLIC_BASE_URL (required then, e.g. https://line.example.org) plus the
path and query exactly as the server received them (`public_url`): never the client's Host header,
and never a decoded path that Twilio did not sign.

Local mode (LOCAL_MODE=1, `make run`) checks no signature and answers only this machine: a request
from another address, or one carrying an X-Forwarded-* or Forwarded header (a proxy on this machine
would make every client look like 127.0.0.1), gets 403, on every page.

The fields signed are Flask's own `request.form`. A signed request must be a form
(application/x-www-form-urlencoded, as Twilio sends): anything else gets 415.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

from flask import Flask, Request, abort, current_app, request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from twilio.request_validator import RequestValidator
from werkzeug.middleware.proxy_fix import ProxyFix

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


def local_mode(app_config: Mapping[str, Any]) -> bool:
    """True when LOCAL_MODE=1: no signatures, and only this machine is answered (`from_this_machine`)."""
    return bool(app_config.get("LOCAL_MODE"))


#: Characters kept as they are when a decoded path is quoted again (RFC 3986 pchar and "/").
_PATH_SAFE = "/:@!$&'()*+,;=-._~"


def raw_request_target(req: Request) -> str:
    """The path and query exactly as the client sent them.

    gunicorn and werkzeug's server put the request line's target in RAW_URI (REQUEST_URI under
    uWSGI and mod_wsgi). A server that gives neither: the decoded path, quoted again, and the query
    string, which WSGI keeps undecoded. An absolute-form target (http://host/path) keeps only its
    path and query: the host in it is the client's word, like a Host header.
    """
    raw = req.environ.get("RAW_URI") or req.environ.get("REQUEST_URI")
    if raw:
        if not raw.startswith("/"):
            parts = urlsplit(raw)
            raw = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return raw
    path = quote(req.environ.get("SCRIPT_NAME", "") + req.environ.get("PATH_INFO", ""), safe=_PATH_SAFE)
    query = req.environ.get("QUERY_STRING", "")
    return path + (f"?{query}" if query else "")


def public_url(req: Request, base_url: str) -> str:
    """The URL Twilio requested: the configured public base plus the path and query as the server got them."""
    return base_url.rstrip("/") + raw_request_target(req)


def is_loopback(address: str | None) -> bool:
    """Whether `address` is this machine (127.0.0.0/8 or ::1)."""
    try:
        return ipaddress.ip_address(address or "").is_loopback
    except ValueError:
        return False


def is_proxied(req: Request) -> bool:
    """Whether a proxy says it passed the request on (any X-Forwarded-* or Forwarded header)."""
    return any(name.lower().startswith("x-forwarded-") or name.lower() == "forwarded" for name, _ in req.headers)


def from_this_machine(req: Request) -> bool:
    """Local mode's whole check: from a loopback address, and not through a proxy."""
    return is_loopback(req.remote_addr) and not is_proxied(req)


def refuse_unless_from_this_machine() -> None:
    """Local mode, every page: 403 for anything not straight from this machine (a before-request hook)."""
    if not from_this_machine(request):
        abort(403)


def request_is_from_twilio(req: Request) -> bool:
    """Check the request's signature (or, in local mode, that it comes straight from this machine)."""
    config = current_app.config
    if local_mode(config):
        return from_this_machine(req)
    signature = req.headers.get("X-Twilio-Signature", "")
    if not signature:
        return False
    url = public_url(req, config["PUBLIC_BASE_URL"])
    params = req.form if req.method == "POST" else {}
    return signature_matches(RequestValidator(config["TWILIO_AUTH_TOKEN"]), url, params, signature)


def signature_matches(validator: RequestValidator, url: str, params: Any, signature: str) -> bool:
    """`validator.validate(url, params, signature)`, trying the URL exactly as given first.

    Twilio signs the URL as configured, so the library's signature for it settles nearly every
    request; only a mismatch pays for `validate`, which signs the URL with and without its default
    port. Measured on bench/'s texts (2 cores, shared): validate ~240 us, one signature ~70 us, and
    the line's texts reached 0.33 x the ceiling with validate alone, under the 0.35 floor.
    """
    expected = validator.compute_signature(url, params)
    if hmac.compare_digest(expected.encode(), signature.encode()):
        return True
    return validator.validate(url, params, signature)


def twilio_only(view: F) -> F:
    """Decorate a webhook so that anything not signed by Twilio gets 403 and nothing else happens."""

    @functools.wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        limit = current_app.config.get("MAX_CONTENT_LENGTH")
        if limit and (request.content_length or 0) > limit:
            abort(413)  # before the signature check reads the body
        if not request_is_from_twilio(request):
            abort(403)
        if not is_form(request):
            abort(415)
        return view(*args, **kwargs)

    # Signed by Twilio, so exempt from the CSRF token staff forms need (see ivr/web/staff.py).
    guarded.twilio_signed = True  # type: ignore[attr-defined]
    return guarded  # type: ignore[return-value]


#: What Twilio's webhooks are: a form, or (with no fields at all) nothing.
FORM_TYPE = "application/x-www-form-urlencoded"


def is_form(req: Request) -> bool:
    """Whether the request body is what Twilio sends: a URL-encoded form, or empty."""
    if req.mimetype == FORM_TYPE:
        return True
    return not req.mimetype and not req.content_length and "chunked" not in req.headers.get("Transfer-Encoding", "")


def trust_proxies(app: Flask, hops: int) -> None:
    """Believe `hops` proxies' X-Forwarded-For, -Proto and -Host (TRUSTED_PROXY_HOPS); 0 believes none.

    Each proxy must set these headers itself: ProxyFix reads the last `hops` values, so a client
    cannot slip its own past a proxy that appends them.
    """
    if hops > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
        return
    warned = threading.Event()

    def warn_once_of_an_unbelieved_proxy() -> None:
        # A proxy the line does not believe: every client has the proxy's address, so one attacker's
        # failed sign-ins would limit everyone. Said once per process, where start-up is logged.
        if warned.is_set() or "X-Forwarded-For" not in request.headers:
            return
        warned.set()
        log.warning(
            "Requests carry X-Forwarded-For but TRUSTED_PROXY_HOPS=0: every client looks like the proxy, "
            "so staff sign-in limits count them all as one address. Set TRUSTED_PROXY_HOPS to the number "
            "of proxies in front of the line."
        )

    app.before_request(warn_once_of_an_unbelieved_proxy)


#: Where Twilio posts. A webhook never has a browser session: a call's state travels in its URLs.
WEBHOOK_PATHS = ("/voice", "/sms")


def is_webhook_path(path: str) -> bool:
    """Whether `path` is one of Twilio's webhooks (or below one)."""
    return any(path == prefix or path.startswith(prefix + "/") for prefix in WEBHOOK_PATHS)


class WebhookFreeSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions for staff pages, and none for Twilio's webhooks.

    Opening a session builds a signing serializer and reads a cookie on every request; a key press
    needs neither. A webhook that tried to use `session` would fail loudly instead of keeping state
    where another app process could not see it.
    """

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if is_webhook_path(request.path):
            return None  # Flask then uses its null session, which is never saved
        return super().open_session(app, request)
