"""Only Twilio may drive the line: check X-Twilio-Signature on every webhook.

With TWILIO_AUTH_TOKEN set, a request must carry a signature that the `twilio` library's
RequestValidator accepts for the URL Twilio used (with or without the default port, compared in
constant time by the library). Behind a proxy that URL is not the one Flask sees, so PUBLIC_BASE_URL
(e.g. https://line.example.org) replaces scheme and host; or, with TRUSTED_PROXY_HOPS set, werkzeug's
ProxyFix rebuilds it from that many X-Forwarded-* headers (never trusted by default). Without a token
the line runs in local mode and answers only the loopback address.

The fields signed are Flask's own `request.form`. A signed request must be a form
(application/x-www-form-urlencoded, as Twilio sends): anything else gets 415.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from flask import Flask, Request, abort, current_app, request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from twilio.request_validator import RequestValidator
from werkzeug.middleware.proxy_fix import ProxyFix

F = TypeVar("F", bound=Callable[..., Any])


def local_mode(app_config: Mapping[str, Any]) -> bool:
    """True when no Twilio auth token is configured: the line then trusts only this machine."""
    return not app_config.get("TWILIO_AUTH_TOKEN")


def public_url(req: Request, base_url: str) -> str:
    """The URL Twilio requested: the configured public base plus the path and query Flask received."""
    if not base_url:
        return req.url
    path = req.full_path if req.query_string else req.path
    return base_url.rstrip("/") + path


def is_loopback(address: str | None) -> bool:
    """Whether `address` is this machine (127.0.0.0/8 or ::1)."""
    try:
        return ipaddress.ip_address(address or "").is_loopback
    except ValueError:
        return False


def request_is_from_twilio(req: Request) -> bool:
    """Check the request's signature (or, in local mode, that it comes from this machine)."""
    config = current_app.config
    if local_mode(config):
        return is_loopback(req.remote_addr)
    signature = req.headers.get("X-Twilio-Signature", "")
    if not signature:
        return False
    url = public_url(req, config.get("PUBLIC_BASE_URL", ""))
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

    # Signed by Twilio, so exempt from the CSRF token staff forms need (see ivr/staff.py).
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
