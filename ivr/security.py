"""Only Twilio may drive the line: check X-Twilio-Signature on every webhook.

With TWILIO_AUTH_TOKEN set, a request must carry a signature that the `twilio` library's
RequestValidator accepts for the URL Twilio used. Behind a proxy that URL is not the one Flask
sees, so PUBLIC_BASE_URL (e.g. https://line.example.org) replaces scheme and host; or, with
TRUSTED_PROXY_HOPS set, werkzeug's ProxyFix rebuilds it from that many X-Forwarded-* headers (never
trusted by default). Without a token the line runs in local mode and answers only the loopback address.

Signatures are compared in constant time (hmac.compare_digest). A signed request must be a form
(application/x-www-form-urlencoded, as Twilio sends): anything else gets 415.

Every key press of every call passes through here, so the check is kept cheap: `WebhookRequest`
reads URL-encoded bodies and queries without werkzeug's general-purpose machinery (same results,
same limits), and the signature is one HMAC over the fields as parsed once.
"""

from __future__ import annotations

import base64
import functools
import hmac
import ipaddress
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, cast
from urllib.parse import unquote, urlparse

import werkzeug.urls  # noqa: F401  (registers the "werkzeug.url_quote" codec error handler used below)
from flask import Flask, Request, abort, current_app, request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from twilio.request_validator import add_port, remove_port
from werkzeug.datastructures import ImmutableMultiDict, MultiDict
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.utils import cached_property

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
    return _is_from_twilio(_unproxied(req), current_app.config)


def _is_from_twilio(req: Request, config: Mapping[str, Any]) -> bool:
    if local_mode(config):
        return is_loopback(req.remote_addr)
    signature = req.environ.get("HTTP_X_TWILIO_SIGNATURE", "")  # req.headers.get("X-Twilio-Signature", ""), cheaper
    if not signature:
        return False
    url = public_url(req, config.get("PUBLIC_BASE_URL", ""))
    params = req.form if req.method == "POST" else {}
    return signature_matches(config["TWILIO_AUTH_TOKEN"], url, params, signature)


def signature_matches(token: str, url: str, params: Any, signature: str) -> bool:
    """Whether `signature` is Twilio's for `url` and `params`, compared in constant time.

    Twilio signs the URL exactly as configured, so one HMAC settles nearly every request; like
    RequestValidator.validate, the URL also counts with or without its default port (Twilio is not
    consistent there). Unlike it, every comparison is hmac.compare_digest. `params` is what
    RequestValidator accepts: a MultiDict (every value of a field counts), or a dict of single values.
    """
    key = token.encode()
    fields = _signed_fields(params)
    given = signature.encode()
    if hmac.compare_digest(_signature(key, url, fields), given):
        return True
    # Only a request that failed as given pays for parsing the URL into its port variants.
    parsed = urlparse(url)
    for candidate in dict.fromkeys((remove_port(parsed), add_port(parsed))):
        if candidate != url and hmac.compare_digest(_signature(key, candidate, fields), given):
            return True
    return False


def twilio_signature(token: str, url: str, params: Any) -> str:
    """X-Twilio-Signature for a request to `url` with form `params`: what RequestValidator.compute_signature gives."""
    return _signature(token.encode(), url, _signed_fields(params)).decode()


def _signed_fields(params: Any) -> str:
    """The fields as Twilio appends them to the URL before signing: names sorted, then each name with
    each of its distinct values, sorted (a repeated field counts every value it carries)."""
    if not params:
        return ""
    pieces = []
    if isinstance(params, MultiDict):  # Flask's form: each field's values are kept together
        named: Iterable[tuple[str, list[str]]] = sorted(params.lists())
    else:
        named = ((name, _values(params, name)) for name in sorted(set(params)))
    for name, values in named:
        for value in sorted(set(values)) if len(values) > 1 else values:
            pieces.append(name + value)
    return "".join(pieces)


def _values(params: Any, name: str) -> list[str]:
    """Every value of field `name`, read the way RequestValidator.get_values reads it."""
    getall = getattr(params, "getall", None) or getattr(params, "getlist", None)
    if getall is not None:
        return list(getall(name))
    return [params[name]]


def _signature(key: bytes, url: str, fields: str) -> bytes:
    # One-shot HMAC-SHA1 (OpenSSL's), base64: Twilio's signature scheme for the auth token.
    return base64.b64encode(hmac.digest(key, (url + fields).encode(), "sha1"))


def _unproxied(req: Request) -> Request:
    """The request object itself, not Flask's context-local proxy to it: each attribute read through
    the proxy is a context-variable lookup, and a webhook reads several."""
    get_current = getattr(req, "_get_current_object", None)
    return cast(Request, get_current()) if get_current is not None else req


def current_request() -> Request:
    """The request being served, itself (see `_unproxied`): for code that reads it many times."""
    return cast(Request, cast(Any, request)._get_current_object())


def current_app_object() -> Flask:
    """The app serving this request, itself rather than the `current_app` proxy (one lookup, not one per use)."""
    return cast(Flask, cast(Any, current_app)._get_current_object())


def twilio_only(view: F) -> F:
    """Decorate a webhook so that anything not signed by Twilio gets 403 and nothing else happens."""

    @functools.wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        req = _unproxied(request)
        config = current_app.config
        limit = config.get("MAX_CONTENT_LENGTH")
        if limit and (req.content_length or 0) > limit:
            abort(413)  # before the signature check reads the body
        if not _is_from_twilio(req, config):
            abort(403)
        if not is_form(req):
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


def parse_form(text: str) -> list[tuple[str, str]]:
    """The fields of a URL-encoded form or query, in order, duplicates kept: exactly what werkzeug
    reads (urllib's parse_qsl with blank values kept, invalid UTF-8 left percent-encoded), for a
    fraction of the cost on the short, mostly plain fields Twilio sends."""
    fields = []
    for piece in text.split("&"):
        if not piece:
            continue
        name, _, value = piece.partition("=")
        if "+" in name:
            name = name.replace("+", " ")
        if "%" in name:
            name = unquote(name, errors="werkzeug.url_quote")
        if "+" in value:
            value = value.replace("+", " ")
        if "%" in value:
            if value.startswith(("%2B", "%2b")) and "%" not in value[3:]:
                value = "+" + value[3:]  # a phone number (From, To, Caller, Called): its one escape is the "+"
            else:
                value = unquote(value, errors="werkzeug.url_quote")
        fields.append((name, value))
    return fields


class WebhookFields(ImmutableMultiDict[str, str]):
    """Flask's immutable form/query dictionary, whose `get` of a missing field is a plain miss.

    MultiDict.get finds a missing field by raising and catching a BadRequestKeyError (an HTTP
    exception, costly to build); webhooks ask for optional fields (Digits, SpeechResult) all the time.
    """

    def get(self, key: str, default: Any = None, type: Any = None) -> Any:  # type: ignore[override]
        """The field's first value, `default` when it is missing (converted with `type` as MultiDict does)."""
        if type is not None:
            return super().get(key, default, type)
        values = dict.get(self, key)
        return values[0] if values else default


class WebhookRequest(Request):
    """Flask's request, reading URL-encoded bodies (Twilio's webhooks) and queries with `parse_form`.

    Everything else is werkzeug's own: the body stream with its MAX_CONTENT_LENGTH limit (413), and
    every other content type. Like werkzeug, a body that is not UTF-8 reads as an empty form, and
    `form` is parsed once, so the signature check and the view read the same fields.
    """

    parameter_storage_class = WebhookFields

    def _load_form_data(self) -> None:
        if "form" in self.__dict__:
            return
        if self.mimetype != FORM_TYPE:
            super()._load_form_data()
            return
        length, limit = self.content_length, self.max_content_length
        if length is not None and (limit is None or length <= limit):
            # Twilio always says how long its form is: read exactly that. werkzeug's stream reads in
            # 64 KiB tries until the server's reader says "no more", a second pass through
            # gunicorn's Python reader that cost a key press ~70 us of CPU under load.
            stream = self.environ["wsgi.input"]
            body = stream.read(length)
        else:  # chunked, or too long (413): werkzeug's limited stream and its errors
            stream = self._get_stream_for_parsing()
            body = stream.read()
        try:
            form: MultiDict[str, str] = self.parameter_storage_class(parse_form(body.decode()))
        except ValueError:  # not UTF-8: werkzeug's silent parser gives an empty form too
            form = self.parameter_storage_class()
        files: MultiDict[str, Any] = ImmutableMultiDict()
        state = self.__dict__
        state["stream"], state["form"], state["files"] = stream, form, files
        if current_app and current_app.debug:
            # As flask.Request does in debug mode: a clear error for a view that reads `files`.
            from flask.debughelpers import attach_enctype_error_multidict

            attach_enctype_error_multidict(self)

    @cached_property
    def args(self) -> MultiDict[str, str]:
        """The query's parameters, as werkzeug reads them (`parse_form`)."""
        return self.parameter_storage_class(parse_form(self.query_string.decode()))
