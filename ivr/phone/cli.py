"""The `python -m ivr.phone` command line (and `make call`, `make text`)."""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TextIO

from ivr.phone.script import Action, Caller, ScriptedCaller, ScriptError, TerminalCaller, parse_actions, parse_script
from ivr.phone.texting import text_line
from ivr.phone.transport import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_CALLER,
    DEFAULT_LINE_NUMBER,
    AppTransport,
    HttpTransport,
    PhoneSetup,
    Signer,
    Transport,
)
from ivr.phone.twiml import place_call

#: Where the phone sends Twilio's call status callback at the end of each call: as a number whose "Call status
#: changes" is set to the line's /voice/status (docs/deploying.md), so the picture of the line sees it end.
STATUS_CALLBACK = "/voice/status"


def _default_url() -> str:
    return f"http://127.0.0.1:{os.environ.get('PORT', '5000')}"


@contextlib.contextmanager
def _in_process_line(signer: Signer) -> Iterator[Transport]:
    """Build the line in this process on a throw-away SQLite file; settings come from the environment.

    A phone with no token calls a line in local mode; one with a token calls a line that checks its
    signatures against the URL it signs (PUBLIC_BASE_URL, or the in-process line's own address).
    """
    from ivr import create_app
    from ivr.storage import Storage

    settings = {"LOCAL_MODE": "0" if signer.token and os.environ.get("LOCAL_MODE") != "1" else "1"}
    if settings["LOCAL_MODE"] == "0":
        settings["PUBLIC_BASE_URL"] = signer.public_base_url or AppTransport.base_url
    with tempfile.TemporaryDirectory(prefix="careline-phone-") as folder:
        database_url = f"sqlite:///{Path(folder) / 'careline.sqlite3'}"
        secret_key = os.environ.get("SECRET_KEY") or secrets.token_hex(32)
        if settings["LOCAL_MODE"] == "0":  # only local mode upgrades its own schema (ivr/release.py)
            release_step = Storage(database_url, secret_key)
            release_step.migrate()
            release_step.dispose()
        app = create_app({**settings, "DATABASE_URL": database_url, "SECRET_KEY": secret_key})
        try:
            yield AppTransport(app)
        finally:
            app.extensions["careline"].storage.engine.dispose()


def build_parser() -> argparse.ArgumentParser:
    """The `python -m ivr.phone` command line."""
    parser = argparse.ArgumentParser(
        prog="python -m ivr.phone",
        description="Call or text the CareLine line from this terminal, as Twilio would, with no Twilio account.",
        epilog="Script syntax: see the module's docstring (python -c 'import ivr.phone; help(ivr.phone)') or README.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    call = commands.add_parser("call", help="call the voice line (POST /voice)")
    text = commands.add_parser("text", help="text the messaging line (POST /sms)")
    for sub in (call, text):
        where = sub.add_mutually_exclusive_group()
        where.add_argument(
            "--url", default=None, help="the running line's base URL (default http://127.0.0.1:$PORT, PORT=5000)"
        )
        where.add_argument("--in-process", action="store_true", help="build the line here on a temporary SQLite file")
        sub.add_argument("--token", default=None, help="Twilio auth token to sign with (default: $TWILIO_AUTH_TOKEN)")
        sub.add_argument(
            "--public-base-url",
            default=None,
            help="URL to sign for, as Twilio sees the line behind a proxy (default: $PUBLIC_BASE_URL)",
        )
        sub.add_argument(
            "--from", dest="caller_number", default=DEFAULT_CALLER, help=f"caller's number (default {DEFAULT_CALLER})"
        )
        sub.add_argument(
            "--to",
            dest="line_number",
            default=DEFAULT_LINE_NUMBER,
            help=f"the line's number (default {DEFAULT_LINE_NUMBER})",
        )
        sub.add_argument("--script", type=Path, help="file of actions (call) or messages (text), one per line")
        sub.add_argument("-v", "--verbose", action="store_true", help="also show every request and its answer")
        sub.add_argument(
            "--width", type=int, default=None, help="wrap lines at this width (default: the terminal's; 0: never)"
        )
    call.add_argument("--keys", help="actions, e.g. '5 * say \"living will\" silence 0 dial:accept'")
    call.add_argument("--path", default="/voice", help="voice webhook path (default /voice)")
    call.add_argument("--speak", action="store_true", help="speak every <Say> through espeak-ng")
    call.add_argument("--speak-to", type=Path, metavar="DIR", help="write what the line says to DIR/turn-NN.wav")
    text.add_argument("--messages", help="messages separated by |, e.g. 'MENU|HOSPICE|MORE'")
    text.add_argument("--path", default="/sms", help="messaging webhook path (default /sms)")
    text.add_argument("--no-twilio-opt-out", action="store_true", help="do not act out Twilio's STOP/START handling")
    return parser


def main(argv: list[str] | None = None, stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    """Run the phone; the exit status is 0 when the call or conversation had no error, else 1 (2: bad usage)."""
    args = build_parser().parse_args(argv)
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    token = os.environ.get("TWILIO_AUTH_TOKEN", "") if args.token is None else args.token
    base = os.environ.get("PUBLIC_BASE_URL", "") if args.public_base_url is None else args.public_base_url
    signer = Signer(token, base if token else "")
    account = os.environ.get("TWILIO_ACCOUNT_SID") or DEFAULT_ACCOUNT_SID
    try:
        script = _script_lines(args, stdin)
        with contextlib.ExitStack() as stack:
            transport: Transport
            if args.in_process:
                transport = stack.enter_context(_in_process_line(signer))
            else:
                transport = HttpTransport(args.url or _default_url())
            setup = PhoneSetup(transport, signer, args.caller_number, args.line_number, account, STATUS_CALLBACK)
            if args.command == "call":
                caller: Caller = TerminalCaller(out=stdout) if script is None else ScriptedCaller(script)
                call = place_call(
                    setup,
                    caller,
                    args.path,
                    stdout,
                    verbose=args.verbose,
                    speaker_folder=args.speak_to,
                    speak=args.speak or bool(args.speak_to),
                    width=args.width,
                )
                return 0 if call.ok else 1
            messages = _messages(args, stdin, stdout)
            texts = text_line(
                setup,
                messages,
                args.path,
                stdout,
                verbose=args.verbose,
                twilio_opt_out=not args.no_twilio_opt_out,
                width=args.width,
            )
            return 0 if texts.ok else 1
    except ScriptError as error:
        stdout.write(f"!! ERROR: script: {error}\n")
        return 2


def _script_lines(args: argparse.Namespace, stdin: TextIO) -> list[Action] | None:
    """The call script from --keys, --script or piped stdin; None for an interactive call."""
    if args.command != "call":
        return None
    if args.keys is not None and args.script is not None:
        raise ScriptError("use --keys or --script, not both")
    if args.keys is not None:
        return parse_actions(args.keys)
    if args.script is not None:
        return parse_script(args.script.read_text(encoding="utf-8").splitlines())
    if not stdin.isatty():
        return parse_script(stdin.read().splitlines())
    return None


def _messages(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> Iterable[str]:
    if args.messages is not None and args.script is not None:
        raise ScriptError("use --messages or --script, not both")
    if args.messages is not None:
        return [part.strip() for part in args.messages.split("|") if part.strip()]
    if args.script is not None:
        lines = args.script.read_text(encoding="utf-8").splitlines()
        return [line.strip() for line in lines if line.strip() and not line.strip().startswith("//")]
    if not stdin.isatty():
        return [line.strip() for line in stdin.read().splitlines() if line.strip()]
    return _typed_messages(stdout)


def _typed_messages(stdout: TextIO) -> Iterator[str]:
    stdout.write("   (type a message and press Enter; Ctrl-D or /quit to stop)\n")
    while True:
        try:
            typed = input("you> ")
        except (EOFError, KeyboardInterrupt):
            stdout.write("\n")
            return
        if typed.strip() == "/quit":
            return
        yield typed
