"""A phone on this machine: call and text the line from a terminal, with no Twilio account.

    python -m ivr.phone call                      # talk to `make run` at http://127.0.0.1:5000
    python -m ivr.phone call --keys '5 say "living will" silence 0 dial:busy'
    python -m ivr.phone call --in-process         # build the line here, on a throw-away SQLite file
    python -m ivr.phone text --messages 'MENU|HOSPICE'

The phone plays Twilio's part. It POSTs the form fields Twilio sends (signed with the `twilio`
library's RequestValidator when a token is configured) and carries out the TwiML it gets back verb by
verb, the way Twilio would: <Say> is printed (and spoken through espeak-ng with --speak), <Gather>
waits for the caller, <Dial> rings pretend staff phones (fetching the whisper a staff member hears and
pressing their key), <Record> takes a typed message, and the call ends at <Hangup> or at the end of the
document. Anything Twilio would reject (invalid XML, an unknown verb, a non-200 answer, a page that is
not TwiML) is reported as an error, and a scripted run then exits with status 1.

Script syntax (`--keys` on the command line, or `--script FILE` with one action per line):

    5  *  #  123#        keys pressed (several keys in one go for a multi-digit <Gather>)
    press 5              the same, spelled out
    say hospice          speech; quote a phrase on the command line: say "living will"
    silence              say nothing until the <Gather> times out
    hangup               hang up
    record "Call me."    at a <Record>: the message (then the finish key; follow with hangup to hang up)
    dial:accept          at a <Dial>: staff answer and press 1; also dial:decline (they press 2),
                         dial:no-key (they answer but press nothing, e.g. their voicemail),
                         dial:busy, dial:no-answer, dial:failed

In a script file a line starting with `//` is a comment, and `say`/`record` take the rest of the line.
When the script runs out, the phone hangs up. Without --keys/--script the phone asks at the terminal
(Enter alone is silence: the phone does not run a clock, so Enter stands for "the timeout passed").
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import textwrap
import wave
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any, Literal, Protocol, TextIO
from urllib.parse import urlencode, urljoin, urlsplit

from twilio.request_validator import RequestValidator

from ivr import gsm

API_VERSION = "2010-04-01"
#: Fictional numbers (555-01xx is set aside for fiction): the caller and the line's own number.
DEFAULT_CALLER = "+15555550100"
DEFAULT_LINE_NUMBER = "+15555550199"
DEFAULT_ACCOUNT_SID = "AC" + "0" * 32
#: What Twilio says when an answer is not usable TwiML; then it hangs up.
TWILIO_APPLICATION_ERROR = "We are sorry, an application error has occurred. Goodbye."
#: Requests in a row without the caller doing anything before the phone calls it a loop.
MAX_REQUESTS_WITHOUT_INPUT = 25
#: How long a simulated conversation with staff lasts, in seconds.
STAFF_CONVERSATION_SECONDS = 90
#: Words a minute of a typed voice message, to estimate the recording's length.
SPEAKING_WORDS_PER_MINUTE = 150

# -- Twilio's vocabulary --------------------------------------------------------------------------

_LISTEN_VERBS = ("Say", "Play", "Pause")
#: Attributes Twilio knows, per verb or noun; anything else earns a schema warning (Twilio 12200).
ATTRIBUTES: Mapping[str, frozenset[str]] = {
    "Say": frozenset({"voice", "language", "loop"}),
    "Play": frozenset({"loop", "digits"}),
    "Pause": frozenset({"length"}),
    "Gather": frozenset(
        {
            "action", "method", "timeout", "numDigits", "finishOnKey", "input", "speechTimeout", "maxSpeechTime",
            "language", "hints", "profanityFilter", "speechModel", "enhanced", "partialResultCallback",
            "partialResultCallbackMethod", "actionOnEmptyResult", "bargeIn", "debug",
        }
    ),
    "Redirect": frozenset({"method"}),
    "Hangup": frozenset(),
    "Reject": frozenset({"reason"}),
    "Dial": frozenset(
        {
            "action", "method", "timeout", "hangupOnStar", "timeLimit", "callerId", "record", "trim",
            "recordingStatusCallback", "recordingStatusCallbackMethod", "recordingStatusCallbackEvent",
            "recordingTrack", "answerOnBridge", "ringTone", "sequential", "referUrl", "referMethod", "events",
        }
    ),
    "Number": frozenset(
        {
            "sendDigits", "url", "method", "statusCallback", "statusCallbackEvent", "statusCallbackMethod", "byoc",
            "machineDetection", "machineDetectionTimeout", "machineDetectionSpeechThreshold",
            "machineDetectionSpeechEndThreshold", "machineDetectionSilenceTimeout", "amdStatusCallback",
            "amdStatusCallbackMethod",
        }
    ),
    "Sip": frozenset(
        {
            "username", "password", "url", "method", "statusCallback", "statusCallbackEvent",
            "statusCallbackMethod", "machineDetection", "machineDetectionTimeout", "amdStatusCallback",
            "amdStatusCallbackMethod",
        }
    ),
    "Client": frozenset({"url", "method", "statusCallback", "statusCallbackEvent", "statusCallbackMethod"}),
    "Record": frozenset(
        {
            "action", "method", "timeout", "finishOnKey", "maxLength", "playBeep", "trim", "recordingStatusCallback",
            "recordingStatusCallbackMethod", "recordingStatusCallbackEvent", "storageUrl", "storageUrlMethod",
            "transcribe", "transcribeCallback", "recordingChannels",
        }
    ),
    "Message": frozenset({"to", "from", "action", "method", "statusCallback"}),
}  # fmt: skip
#: Real TwiML voice verbs this phone does not act out: shown as errors so nobody mistakes silence for success.
UNSUPPORTED_VOICE_VERBS = frozenset(
    {"Connect", "Enqueue", "Leave", "Pay", "Prompt", "Queue", "Refer", "Start", "Stop", "Stream", "Sms", "Message"}
)
#: Messages Twilio itself answers on a long-code number (default opt-out handling).
OPT_OUT_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"})
OPT_IN_WORDS = frozenset({"START", "YES", "UNSTOP"})


def new_sid(prefix: str) -> str:
    """A Twilio-shaped SID: two letters and 32 hex digits."""
    return prefix + secrets.token_hex(16)


def spoken_text(element: ET.Element) -> str:
    """The words of a <Say> (or <Message>), SSML tags stripped and whitespace folded."""
    return " ".join("".join(element.itertext()).split())


# -- SMS segments (GSM-7 / UCS-2) -----------------------------------------------------------------


@dataclass(frozen=True)
class Segments:
    """How a text travels: its encoding, how many SMS segments it takes, and its length in that encoding."""

    encoding: Literal["GSM-7", "UCS-2"]
    count: int
    units: int  # septets for GSM-7, UTF-16 code units for UCS-2

    def describe(self) -> str:
        """E.g. '2 segments, GSM-7'."""
        plural = "" if self.count == 1 else "s"
        return f"{self.count} segment{plural}, {self.encoding}"


def sms_segments(body: str) -> Segments:
    """Count the segments of `body` as a handset does, with the line's own GSM-7 table (ivr/gsm.py)."""
    length = gsm.measure(body)
    return Segments(length.encoding, length.segments, length.units)


# -- talking to the line --------------------------------------------------------------------------


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

    base_url = "http://localhost"

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


# -- the transcript -------------------------------------------------------------------------------

EntryKind = Literal["say", "line", "you", "staff", "note", "warning", "error", "request", "end"]


@dataclass(frozen=True)
class Entry:
    """One line of a transcript: who, what, and (for speech) in which language."""

    kind: EntryKind
    text: str
    language: str = ""
    who: str = "LINE"


class Transcript:
    """Collects what happens on the phone and prints it as it happens."""

    def __init__(self, out: TextIO | None = None, verbose: bool = False, width: int | None = None) -> None:
        self.entries: list[Entry] = []
        self.out = out
        self.verbose = verbose
        if width is None:  # wrap for a person at a terminal; keep one entry per line for pipes and files
            interactive = out is not None and hasattr(out, "isatty") and out.isatty()
            width = min(max(shutil.get_terminal_size((100, 24)).columns, 60), 110) if interactive else 0
        self.width = width

    def add(self, kind: EntryKind, text: str, language: str = "", who: str = "LINE") -> None:
        """Record an entry and print it."""
        entry = Entry(kind, text, language, who)
        self.entries.append(entry)
        if self.out is None or (kind == "request" and not self.verbose):
            return
        self.out.write(self.format(entry) + "\n")
        self.out.flush()

    def format(self, entry: Entry) -> str:
        """How an entry reads in the terminal."""
        if entry.kind == "say":
            head = f"{entry.who} [{entry.language}]: "
        elif entry.kind == "error":
            head = "!! ERROR: "
        elif entry.kind == "warning":
            head = "!! WARNING: "
        elif entry.kind == "you":
            head = "YOU: "
        elif entry.kind == "staff":
            head = "STAFF: "
        elif entry.kind == "request":
            head = "   > "
        elif entry.kind == "end":
            head = "-- "
        elif entry.kind == "line":
            head = f"{entry.who}: "
        else:
            head = "   "
        if not self.width:
            return head + entry.text
        return textwrap.fill(
            entry.text, self.width, initial_indent=head, subsequent_indent=" " * min(len(head), 16),
            break_on_hyphens=False, break_long_words=False,
        )  # fmt: skip

    def said(self, who: str = "LINE") -> list[str]:
        """Every sentence spoken by `who` (the line, or 'STAFF HEARS' for the whisper)."""
        return [e.text for e in self.entries if e.kind == "say" and e.who == who]

    def of(self, kind: EntryKind) -> list[str]:
        """The text of every entry of one kind."""
        return [e.text for e in self.entries if e.kind == kind]

    def text(self) -> str:
        """The whole transcript as printed (requests included)."""
        return "\n".join(self.format(e) for e in self.entries)


# -- speech through espeak-ng ---------------------------------------------------------------------

_ESPEAK_VOICES = {"en-us": "en-us", "en-gb": "en-gb", "es-us": "es-419", "es-mx": "es-419", "es-es": "es"}
_ESPEAK_DEFAULT_WPM = 175
_RATE_WORDS = {"x-slow": 50, "slow": 75, "medium": 100, "fast": 125, "x-fast": 150}


def espeak_voice(language: str) -> str:
    """The espeak-ng voice for a <Say> language such as en-US or es-US."""
    code = (language or "en-US").lower()
    return _ESPEAK_VOICES.get(code, code.split("-")[0])


def espeak_rate(say: ET.Element) -> int:
    """Words a minute for espeak-ng, from the SSML <prosody rate> inside a <Say> (default 100%)."""
    percent = 100
    for element in say.iter():
        if element.tag.rsplit("}", 1)[-1] == "prosody" and element.get("rate"):
            rate = element.get("rate", "").strip().lower()
            if rate.endswith("%") and rate[:-1].isdigit():
                percent = int(rate[:-1])
            elif rate in _RATE_WORDS:
                percent = _RATE_WORDS[rate]
            break
    return max(80, round(_ESPEAK_DEFAULT_WPM * percent / 100))


class Speaker:
    """Speaks each <Say> through espeak-ng: aloud, or (with a folder) into one WAV file per turn."""

    def __init__(self, transcript: Transcript, folder: Path | None = None, aloud: bool = True) -> None:
        self.transcript = transcript
        self.folder = folder
        self.aloud = aloud and folder is None
        self.available = shutil.which("espeak-ng") is not None
        self.files: list[tuple[Path, float]] = []
        self._frames: list[bytes] = []
        self._params: tuple[int, int, int] | None = None  # channels, sample width, frame rate
        self._turn = 0
        self._failed = False
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
        if not self.available:
            transcript.add("warning", "espeak-ng is not installed (apt-get install espeak-ng): printing only.")

    def say(self, element: ET.Element, text: str, language: str) -> None:
        """Speak one <Say>."""
        if not self.available or self._failed or not text:
            return
        command = ["espeak-ng", "-v", espeak_voice(language), "-s", str(espeak_rate(element))]
        if self.aloud:
            self._run([*command, "--", text])
            return
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / "say.wav"
            if self._run([*command, "-w", str(path), "--", text]):
                with wave.open(str(path), "rb") as audio:
                    params = (audio.getnchannels(), audio.getsampwidth(), audio.getframerate())
                    if self._params not in (None, params):
                        self.transcript.add("warning", f"espeak-ng voice for {language} uses another sample format")
                        return
                    self._params = params
                    self._frames.append(audio.readframes(audio.getnframes()))

    def pause(self, seconds: float) -> None:
        """A <Pause>: real silence when speaking aloud, recorded silence in a WAV file."""
        if not self.available or self._failed:
            return
        if self.aloud:
            import time

            time.sleep(seconds)
            return
        channels, width, rate = self._params or (1, 2, 22050)
        self._params = (channels, width, rate)
        self._frames.append(b"\0" * int(seconds * rate) * width * channels)

    def end_turn(self) -> None:
        """The line stopped talking (the caller's turn, or the call ended): write the turn's WAV file."""
        if self.folder is None or not self._frames or self._params is None:
            self._frames = []
            return
        self._turn += 1
        path = self.folder / f"turn-{self._turn:02d}.wav"
        channels, width, rate = self._params
        with wave.open(str(path), "wb") as audio:
            audio.setnchannels(channels)
            audio.setsampwidth(width)
            audio.setframerate(rate)
            audio.writeframes(b"".join(self._frames))
            seconds = audio.getnframes() / rate
        self._frames = []
        self.files.append((path, seconds))
        self.transcript.add("note", f"(audio: {path}, {seconds:.1f} s)")

    def _run(self, command: list[str]) -> bool:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        # espeak-ng exits 0 even when it finds no sound device; it only complains on stderr.
        complaint = [line for line in (result.stderr or "").splitlines() if "error" in line.lower()]
        if result.returncode != 0 or complaint:
            self._failed = True
            reason = complaint[-1] if complaint else f"exit status {result.returncode}"
            self.transcript.add(
                "warning", f"espeak-ng cannot speak here ({reason}); try --speak-to DIR. Printing only."
            )
            return False
        return True


# -- what the caller does -------------------------------------------------------------------------

ActionKind = Literal["keys", "speech", "silence", "hangup", "record", "dial"]
DIAL_OUTCOMES = ("accept", "decline", "no-key", "busy", "no-answer", "failed")
_KEY_CHARS = frozenset("0123456789*#")


class ScriptError(ValueError):
    """A script line the phone cannot understand."""


@dataclass(frozen=True)
class Action:
    """One thing the caller (or the staff phone) does."""

    kind: ActionKind
    value: str = ""

    def describe(self) -> str:
        """How the action reads in the transcript."""
        if self.kind == "keys":
            return f"press {' '.join(self.value)}"
        if self.kind == "speech":
            return f'say "{self.value}"'
        if self.kind == "record":
            return f'(speaks after the beep) "{self.value}"'
        if self.kind == "dial":
            return f"dial:{self.value} (what the staff phones do)"
        if self.kind == "silence":
            return "(says nothing)"
        return "hang up"


def parse_actions(text: str) -> list[Action]:
    """Actions from a `--keys` string: `5 * say hospice say "living will" silence 0 dial:busy hangup`."""
    try:
        tokens = shlex.split(text, comments=False, posix=True)
    except ValueError as error:
        raise ScriptError(f"cannot read {text!r}: {error}") from None
    actions: list[Action] = []
    position = 0
    while position < len(tokens):
        word = tokens[position]
        position += 1
        if word.lower() in ("say", "record", "press"):
            if position >= len(tokens):
                raise ScriptError(f"'{word}' needs something after it")
            actions.append(_action(word.lower(), tokens[position]))
            position += 1
        else:
            actions.append(_action(word, ""))
    return actions


def parse_script(lines: Iterable[str]) -> list[Action]:
    """Actions from a script file: one per line (or several keys/words), `//` comments, blank lines skipped."""
    actions: list[Action] = []
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("//"):
            continue
        word, _, rest = line.partition(" ")
        try:
            if word.lower() in ("say", "record"):
                actions.append(_action(word.lower(), _unquote(rest.strip())))
            else:
                actions.extend(parse_actions(line))
        except ScriptError as error:
            raise ScriptError(f"line {number}: {error}") from None
    return actions


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def _action(word: str, argument: str) -> Action:
    lowered = word.lower()
    if lowered == "say":
        if not argument.strip():
            raise ScriptError("'say' needs words after it")
        return Action("speech", argument.strip())
    if lowered == "record":
        return Action("record", argument.strip()) if argument.strip() else Action("silence")
    if lowered == "press":
        word = argument
    if word and set(word) <= _KEY_CHARS:
        return Action("keys", word)
    if lowered in ("silence", "wait", "timeout"):
        return Action("silence")
    if lowered in ("hangup", "hang-up"):
        return Action("hangup")
    if lowered.startswith("dial:") and lowered[5:] in DIAL_OUTCOMES:
        return Action("dial", lowered[5:])
    raise ScriptError(
        f"{word!r} is not an action: use keys (5, *, #, 123#), say <words>, silence, hangup, record <message>, "
        f"or dial:{'|'.join(DIAL_OUTCOMES)}"
    )


Moment = Literal["gather", "dial", "record", "record-end"]
_ALLOWED: Mapping[Moment, frozenset[str]] = {
    "gather": frozenset({"keys", "speech", "silence", "hangup"}),
    "dial": frozenset({"dial", "hangup"}),
    "record": frozenset({"record", "silence", "hangup", "keys"}),
    "record-end": frozenset({"keys", "hangup", "silence"}),
}


class Caller(Protocol):
    """Whoever holds the phone: a script or a person at the terminal."""

    def next(self, moment: Moment, hint: str) -> Action | None:
        """What the caller does now; None when they have nothing more (the script ran out, end of input)."""
        ...

    def follow_up(self, finish_keys: str) -> Action | None:
        """After a recorded message: a finish key, `hangup`, or None to press the usual finish key."""
        ...


def _is_finish_key(action: Action, finish_keys: str) -> bool:
    return action.kind == "keys" and len(action.value) == 1 and action.value in finish_keys


class ScriptedCaller:
    """Plays actions in order; a wrong kind of action for the moment is a script error."""

    def __init__(self, actions: Iterable[Action]) -> None:
        self.actions = list(actions)

    def next(self, moment: Moment, hint: str) -> Action | None:
        if not self.actions:
            return None
        action = self.actions[0]
        if action.kind not in _ALLOWED[moment]:
            raise ScriptError(f"the script says {action.describe()!r}, but the call is at a <{moment}>: {hint}")
        return self.actions.pop(0)

    def follow_up(self, finish_keys: str) -> Action | None:
        upcoming = self.actions[0] if self.actions else None
        if upcoming and (upcoming.kind == "hangup" or _is_finish_key(upcoming, finish_keys)):
            return self.actions.pop(0)
        return None


class TerminalCaller:
    """Asks a person at the terminal what to do next."""

    PROMPTS: Mapping[Moment, str] = {
        "gather": 'your turn: keys (0-9 * #), "say <words>", Enter = silence, "hangup" > ',
        "dial": "what do staff do? 1 answer and press 1 (accept), 2 press 2 (decline), 3 answer but press "
        "nothing, 4 busy, 5 no answer, 6 fail, or hangup > ",
        "record": 'type your message (Enter alone = say nothing, "hangup") > ',
        "record-end": 'Enter = press # (or another finish key), or "hangup" > ',
    }

    def __init__(self, read: Callable[[str], str] = input, out: TextIO = sys.stdout) -> None:
        self.read = read
        self.out = out

    def next(self, moment: Moment, hint: str) -> Action | None:
        while True:
            try:
                typed = self.read(self.PROMPTS[moment]).strip()
            except (EOFError, KeyboardInterrupt):
                self.out.write("\n")
                return None
            try:
                action = self._understand(moment, typed)
            except ScriptError as error:
                self.out.write(f"   {error}\n")
                continue
            if action.kind in _ALLOWED[moment]:
                return action
            self.out.write(f"   {action.describe()!r} does not fit here.\n")

    def follow_up(self, finish_keys: str) -> Action | None:
        action = self.next("record-end", "")
        if action and (action.kind == "hangup" or _is_finish_key(action, finish_keys)):
            return action
        return None

    @staticmethod
    def _understand(moment: Moment, typed: str) -> Action:
        if moment == "dial" and typed in ("1", "2", "3", "4", "5", "6"):
            return Action("dial", DIAL_OUTCOMES[int(typed) - 1])
        if moment == "record" and typed and typed.lower() != "hangup" and not set(typed) <= _KEY_CHARS:
            return Action("record", typed)
        if not typed:
            return Action("silence")
        actions = parse_script([typed])
        if len(actions) != 1:
            raise ScriptError("one action at a time, please")
        return actions[0]


# -- a call -----------------------------------------------------------------------------------------

CallEnd = Literal["hangup", "end-of-document", "you-hung-up", "script-ended", "rejected", "error"]


@dataclass
class CallResult:
    """How a call went: its transcript, how it ended, and any errors and warnings."""

    transcript: Transcript
    ended: CallEnd = "error"
    call_sid: str = ""
    requests: int = 0
    leftover: list[Action] = field(default_factory=list)
    audio: list[tuple[Path, float]] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        """Every error shown during the call."""
        return self.transcript.of("error")

    @property
    def warnings(self) -> list[str]:
        """Every warning shown during the call."""
        return self.transcript.of("warning")

    @property
    def said(self) -> list[str]:
        """Every sentence the line said to the caller."""
        return self.transcript.said()

    @property
    def ok(self) -> bool:
        """No error, and a script (if any) used up."""
        return not self.errors and not self.leftover

    def turns(self) -> list[list[str]]:
        """What the line said to the caller before their first action, then after each one."""
        turns: list[list[str]] = [[]]
        for entry in self.transcript.entries:
            if entry.kind == "you":
                turns.append([])
            elif entry.kind == "say" and entry.who == "LINE":
                turns[-1].append(entry.text)
        return turns


class TwimlError(Exception):
    """The line's answer is not TwiML Twilio could run; the message says why (with Twilio's error code)."""


@dataclass(frozen=True)
class _Goto:
    url: str
    method: str
    extra: Mapping[str, str]


@dataclass(frozen=True)
class _Ended:
    how: CallEnd


def _bool(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


def _number(value: str | None, default: float) -> float:
    try:
        return float(value) if value not in (None, "") else default
    except ValueError:
        return default


class Leg:
    """One call leg run like Twilio runs it: fetch TwiML, carry out its verbs, follow its URLs.

    The caller's leg and a staff member's leg (for the whisper a staff member hears before taking
    a call) are both Legs; `staff` marks the second, so the transcript tells them apart.
    """

    def __init__(
        self,
        requester: Requester,
        transcript: Transcript,
        caller: Caller,
        params: dict[str, str],
        staff: bool = False,
        speaker: Speaker | None = None,
    ) -> None:
        self.requester = requester
        self.transcript = transcript
        self.caller = caller
        self.params = params
        self.listener = "STAFF HEARS" if staff else "LINE"
        self.line_label = "LINE -> STAFF" if staff else "LINE"
        self.actor: EntryKind = "staff" if staff else "you"
        self._pending_callback: tuple[str, ET.Element, str, str, str, int] | None = None
        self.speaker = speaker
        self.requests = 0
        self._quiet_requests = 0

    # -- fetching -------------------------------------------------------------------------------

    def fetch(self, url: str, method: str, extra: Mapping[str, str]) -> tuple[str, ET.Element]:
        """Request TwiML: `extra` fields on top of the call's own; raise TwimlError when unusable."""
        self.requests += 1
        self._quiet_requests += 1
        if self._quiet_requests > MAX_REQUESTS_WITHOUT_INPUT:
            raise TwimlError(f"{MAX_REQUESTS_WITHOUT_INPUT} requests without waiting for the caller: a redirect loop?")
        form = {**self.params, **extra}
        answer = self._send(method, url, form)
        self.params["CallStatus"] = "in-progress"
        return url, parse_twiml(answer, url, "voice")

    def _send(self, method: str, url: str, form: Mapping[str, str]) -> Answer:
        try:
            sent_url, answer = self.requester.request(method, url, form)
        except OSError as error:
            raise TwimlError(f"Twilio 11200 HTTP retrieval failure: cannot reach {url} ({error})") from None
        shown = {k: v for k, v in form.items() if k not in self.params or self.params[k] != v}
        fields = " ".join(f"{k}={v}" for k, v in shown.items())
        self.transcript.add("request", f"{method} {_short(sent_url)} {fields} -> {answer.status} {answer.content_type}")
        if answer.status == 403:
            hint = (
                "the line refused the signature: does --token match its TWILIO_AUTH_TOKEN, and PUBLIC_BASE_URL?"
                if self.requester.signer.token
                else "the line wants signed requests (or local requests only): pass --token / TWILIO_AUTH_TOKEN"
            )
            raise TwimlError(f"Twilio 11200: {method} {_short(url)} answered 403 Forbidden; {hint}")
        if answer.status != 200:
            raise TwimlError(f"Twilio 11200 HTTP retrieval failure: {method} {_short(url)} answered {answer.status}")
        return answer

    # -- running --------------------------------------------------------------------------------

    def run(self, url: str, method: str = "POST", extra: Mapping[str, str] | None = None) -> CallEnd:
        """Run the leg from `url` until it ends; errors end it too, after being shown."""
        step: _Goto | _Ended = _Goto(url, method, extra or {})
        try:
            while isinstance(step, _Goto):
                document_url, root = self.fetch(step.url, step.method, step.extra)
                self.flush_callbacks()
                step = self.execute(document_url, root)
        except TwimlError as error:
            self.transcript.add("error", str(error))
            self.transcript.add("note", f'(Twilio would say "{TWILIO_APPLICATION_ERROR}" and hang up)')
            step = _Ended("error")
        except ScriptError as error:
            self.transcript.add("error", f"script: {error}")
            step = _Ended("error")
        if self.speaker:
            self.speaker.end_turn()
        return step.how

    def execute(self, document_url: str, root: ET.Element) -> _Goto | _Ended:
        """Carry out one TwiML document, verb by verb."""
        for verb in root:
            check_attributes(verb, self.transcript)
            tag = verb.tag
            if tag == "Say":
                self.say(verb)
            elif tag == "Play":
                self.play(verb)
            elif tag == "Pause":
                self.pause(verb)
            elif tag == "Gather":
                step = self.gather(verb, document_url)
                if step:
                    return step
            elif tag == "Redirect":
                target = (verb.text or "").strip()
                if not target:
                    raise TwimlError("Twilio 12200 schema validation: <Redirect> needs a URL")
                return _Goto(self.requester.absolute(target, document_url), verb.get("method", "POST"), {})
            elif tag == "Dial":
                step = self.dial(verb, document_url)
                if step:
                    return step
            elif tag == "Record":
                step = self.record(verb, document_url)
                if step:
                    return step
            elif tag == "Hangup":
                self.transcript.add("line", "(hangs up)", who=self.line_label)
                return _Ended("hangup")
            elif tag == "Reject":
                self.transcript.add(
                    "line", f"(rejects the call: {verb.get('reason', 'rejected')})", who=self.line_label
                )
                return _Ended("rejected")
            elif tag in UNSUPPORTED_VOICE_VERBS:
                raise TwimlError(f"<{tag}> is TwiML, but this phone cannot act it out")
            else:
                raise TwimlError(f"Twilio 12200 schema validation: <{tag}> is not a TwiML voice verb")
        return _Ended("end-of-document")

    # -- verbs ----------------------------------------------------------------------------------

    def say(self, verb: ET.Element) -> None:
        text = spoken_text(verb)
        language = verb.get("language", "en-US")
        loops = int(_number(verb.get("loop"), 1))
        repeat = f" (said {loops} times)" if loops > 1 else " (repeated until the caller acts)" if loops == 0 else ""
        self.transcript.add("say", text + repeat, language, self.listener)
        if self.speaker:
            self.speaker.say(verb, text, language)

    def play(self, verb: ET.Element) -> None:
        if verb.get("digits"):
            self.transcript.add("line", f"(plays the tones {verb.get('digits')})", who=self.line_label)
        else:
            self.transcript.add(
                "line", f"(plays {(verb.text or '').strip() or 'nothing: <Play> has no URL'})", who=self.line_label
            )

    def pause(self, verb: ET.Element) -> None:
        seconds = _number(verb.get("length"), 1)
        self.transcript.add("line", f"(pause {seconds:g} s)", who=self.line_label)
        if self.speaker:
            self.speaker.pause(seconds)

    def gather(self, verb: ET.Element, document_url: str) -> _Goto | None:
        """Play the nested verbs, then take keys or speech; None when Twilio falls through to the next verb."""
        for child in verb:
            check_attributes(child, self.transcript)
            if child.tag == "Say":
                self.say(child)
            elif child.tag == "Play":
                self.play(child)
            elif child.tag == "Pause":
                self.pause(child)
            else:
                raise TwimlError(f"Twilio 12200 schema validation: <{child.tag}> cannot be nested in <Gather>")
        if self.speaker:
            self.speaker.end_turn()
        inputs = set((verb.get("input") or "dtmf").split())
        num_digits = int(_number(verb.get("numDigits"), 0))
        finish_on_key = verb.get("finishOnKey", "#")
        timeout = _number(verb.get("timeout"), 5)
        language = verb.get("language", "en-US")
        wants = []
        if "dtmf" in inputs:
            wants.append(f"{num_digits} key{'s' if num_digits != 1 else ''}" if num_digits else "keys")
            if finish_on_key:
                wants.append(f"ending with {finish_on_key}")
        if "speech" in inputs:
            wants.append(f"speech in {language}")
        hint = f"listening for {', '.join(wants)}; {timeout:g} s timeout"
        self.transcript.add("note", f"({hint})")
        action = self.caller.next("gather", hint)
        if action is None:
            raise _ScriptEnded()
        self._quiet_requests = 0
        self.transcript.add(self.actor, action.describe())
        if action.kind == "hangup":
            raise _HungUp()
        result: dict[str, str] = {}
        if action.kind == "keys" and "dtmf" in inputs:
            result = self._collect(action.value, num_digits, finish_on_key, timeout)
        elif action.kind == "speech" and "speech" in inputs:
            result = {"SpeechResult": action.value, "Confidence": "0.92"}
        elif action.kind != "silence":
            self.transcript.add(
                "warning",
                f"this <Gather> does not listen for {action.kind} "
                f"(input={verb.get('input') or 'dtmf'}): Twilio hears nothing",
            )
        if not result.get("Digits") and not result.get("SpeechResult"):
            if action.kind == "silence":
                self.transcript.add("note", f"(no input for {timeout:g} s)")
            if not _bool(verb.get("actionOnEmptyResult")):
                self.transcript.add("note", "(no input, no actionOnEmptyResult: Twilio goes on to the next verb)")
                return None
        target = self.requester.absolute(verb.get("action") or document_url, document_url)
        return _Goto(target, verb.get("method", "POST"), result)

    def _collect(self, keys: str, num_digits: int, finish_on_key: str, timeout: float) -> dict[str, str]:
        digits, finished_on, used = "", "", 0
        for used, key in enumerate(keys, start=1):  # noqa: B007 - `used` counts the keys Twilio took
            if finish_on_key and key in finish_on_key:
                finished_on = key
                break
            digits += key
            if num_digits and len(digits) >= num_digits:
                break
        if keys[used:]:
            self.transcript.add("note", f"(the <Gather> was done before these keys: {keys[used:]})")
        if digits and not finished_on and (not num_digits or len(digits) < num_digits):
            self.transcript.add("note", f"(after {timeout:g} s without another key, Twilio sends the keys so far)")
        result = {"Digits": digits} if digits else {}
        if finished_on:
            result["FinishedOnKey"] = finished_on
        return result

    def dial(self, verb: ET.Element, document_url: str) -> _Goto | None:
        """Ring staff: the caller decides what the staff phones do; the whisper runs on a staff leg."""
        targets = [child for child in verb if child.tag in ("Number", "Sip", "Client")]
        for child in verb:
            check_attributes(child, self.transcript)
            if child.tag not in ("Number", "Sip", "Client"):
                raise TwimlError(f"<Dial><{child.tag}> is not something this phone can ring")
        numbers = [(child.text or "").strip() for child in targets] or [(verb.text or "").strip()]
        if not any(numbers):
            raise TwimlError("Twilio 12200 schema validation: <Dial> has no number to ring")
        ring = _number(verb.get("timeout"), 30)
        self.transcript.add("line", f"(rings {', '.join(numbers)} for up to {ring:g} s)", who=self.line_label)
        if self.speaker:
            self.speaker.end_turn()
        action = self.caller.next("dial", "who answers the staff phones?")
        if action is None:
            raise _ScriptEnded()
        self._quiet_requests = 0
        if action.kind == "hangup":
            self.transcript.add(self.actor, "hang up")
            raise _HungUp()
        self.transcript.add(self.actor, "(hold on while it rings)")
        child_sid = new_sid("CA")
        outcome = action.value
        extra = {"DialCallSid": child_sid}
        if outcome in ("busy", "no-answer", "failed"):
            extra["DialCallStatus"] = outcome
            unreached = {
                "busy": "(every staff line is busy)",
                "no-answer": f"(no one answers within {ring:g} s)",
                "failed": "(the call to staff fails)",
            }
            self.transcript.add("staff", unreached[outcome])
        else:
            answered = targets[0] if targets else None
            number = numbers[0]
            bridged = True
            if answered is not None and answered.get("url"):
                bridged = self._whisper(answered, number, verb.get("callerId"), child_sid, outcome, document_url)
            else:
                self.transcript.add("staff", f"{number} answers (no whisper URL)")
                bridged = outcome == "accept"
            extra["DialCallStatus"] = "completed"
            if bridged:
                extra["DialCallDuration"] = str(STAFF_CONVERSATION_SECONDS)
                self.transcript.add(
                    "staff", f"(you talk with staff; they hang up after {STAFF_CONVERSATION_SECONDS} s)"
                )
            else:
                # Twilio reports an answered leg as "completed" even when its whisper hung up before
                # connecting: only the line's own record of the key press tells a real acceptance.
                extra["DialCallDuration"] = "0"
                self.transcript.add("staff", "(the staff phone hangs up without connecting you)")
        if not verb.get("action"):
            self.transcript.add("note", "(the <Dial> has no action: Twilio goes on to the next verb)")
            return None
        return _Goto(self.requester.absolute(verb.get("action", ""), document_url), verb.get("method", "POST"), extra)

    def _whisper(
        self, noun: ET.Element, number: str, caller_id: str | None, child_sid: str, outcome: str, document_url: str
    ) -> bool:
        """Run the staff leg's whisper TwiML; True when it ends letting the call through (not with <Hangup>)."""
        self.transcript.add("staff", f"{number} answers and hears the whisper")
        staff_press = {"accept": [Action("keys", "1")], "decline": [Action("keys", "2")], "no-key": [Action("silence")]}
        from_number = caller_id or self.params.get("From", "")
        params = {
            "CallSid": child_sid,
            "ParentCallSid": self.params["CallSid"],
            "AccountSid": self.params["AccountSid"],
            "From": from_number,
            "Caller": from_number,
            "To": number,
            "Called": number,
            "CallStatus": "in-progress",
            "Direction": "outbound-dial",
            "ApiVersion": API_VERSION,
        }
        staff_leg = Leg(self.requester, self.transcript, _StaffPhone(staff_press[outcome]), params, staff=True)
        url = self.requester.absolute(noun.get("url", ""), document_url)
        ended = staff_leg.run(url, noun.get("method", "POST"))
        self.requests += staff_leg.requests
        if ended == "error":
            raise TwimlError("the whisper a staff member hears failed (see above)")
        return ended == "end-of-document"

    def record(self, verb: ET.Element, document_url: str) -> _Goto | None:
        """Take a typed message as a recording; report it to the action and the recording status callback."""
        max_length = _number(verb.get("maxLength"), 3600)
        finish_on_key = verb.get("finishOnKey", "1234567890*#")
        beep = "a beep, then " if verb.get("playBeep", "true").lower() != "false" else ""
        hint = f"{beep}recording up to {max_length:g} s" + (
            f", ends with a key from {finish_on_key}" if finish_on_key else ""
        )
        self.transcript.add("line", f"({hint})", who=self.line_label)
        if self.speaker:
            self.speaker.end_turn()
        action = self.caller.next("record", hint)
        if action is None:
            raise _ScriptEnded()
        self._quiet_requests = 0
        message = action.value if action.kind == "record" else ""
        ended_by = "hangup" if action.kind == "hangup" else ""
        if action.kind == "keys":
            ended_by = action.value[0]
        said = action.describe()
        if message:
            follow = self.caller.follow_up(finish_on_key)
            if follow is not None:
                ended_by = "hangup" if follow.kind == "hangup" else follow.value
            elif finish_on_key:
                ended_by = "#" if "#" in finish_on_key else finish_on_key[0]
            if ended_by:
                said += ", then " + ("hang up" if ended_by == "hangup" else f"press {ended_by}")
            else:
                said += f", then silence ends the recording after {verb.get('timeout', '5')} s"
        self.transcript.add(self.actor, said)
        seconds = 0
        if message:
            words = len(message.split())
            seconds = max(1, math.ceil(words * 60 / SPEAKING_WORDS_PER_MINUTE))
            if seconds > max_length:
                seconds = int(max_length)
                self.transcript.add("note", f"(the recording stops at maxLength, {max_length:g} s)")
        recording_sid = new_sid("RE")
        account = self.params["AccountSid"]
        recording_url = f"https://api.twilio.com/{API_VERSION}/Accounts/{account}/Recordings/{recording_sid}"
        callback = verb.get("recordingStatusCallback")
        events = set((verb.get("recordingStatusCallbackEvent") or "completed").split())
        if seconds == 0:
            # An empty recording: Twilio skips the action URL and goes on with the next verb.
            self.transcript.add("note", "(nothing was recorded: Twilio skips the action and goes on to the next verb)")
            if callback and "absent" in events:
                self._recording_status(callback, verb, document_url, recording_sid, "", 0, "absent")
            if ended_by == "hangup":
                raise _HungUp()
            return None
        extra = {"RecordingUrl": recording_url, "RecordingSid": recording_sid, "RecordingDuration": str(seconds)}
        if ended_by:
            extra["Digits"] = ended_by
        target = self.requester.absolute(verb.get("action") or document_url, document_url)
        if ended_by == "hangup":
            # The caller is gone: Twilio still requests the action (its TwiML is ignored).
            self._send(verb.get("method", "POST").upper(), target, {**self.params, "CallStatus": "completed", **extra})
            if callback and "completed" in events:
                self._recording_status(callback, verb, document_url, recording_sid, recording_url, seconds, "completed")
            raise _HungUp()
        goto = _Goto(target, verb.get("method", "POST"), extra)
        if callback and "completed" in events:
            self._pending_callback = (callback, verb, document_url, recording_sid, recording_url, seconds)
        return goto

    def _recording_status(
        self, callback: str, verb: ET.Element, document_url: str, sid: str, url: str, seconds: int, status: str
    ) -> None:
        """POST Twilio's recording status callback (its answer is not TwiML and is ignored)."""
        form = {
            "AccountSid": self.params["AccountSid"],
            "CallSid": self.params["CallSid"],
            "RecordingSid": sid,
            "RecordingUrl": url,
            "RecordingStatus": status,
            "RecordingDuration": str(seconds),
            "RecordingChannels": "1",
            "RecordingStartTime": formatdate(usegmt=True),
            "RecordingSource": "RecordVerb",
        }
        target = self.requester.absolute(callback, document_url)
        method = verb.get("recordingStatusCallbackMethod", "POST").upper()
        self.transcript.add("note", f"(Twilio reports the recording as {status} to {_short(target)})")
        self._send(method, target, form)

    def flush_callbacks(self) -> None:
        """Send a recording status callback left waiting (Twilio sends it a moment after the action)."""
        if self._pending_callback:
            callback, verb, document_url, sid, url, seconds = self._pending_callback
            self._pending_callback = None
            self._recording_status(callback, verb, document_url, sid, url, seconds, "completed")


class _HungUp(Exception):
    """The caller hung up."""


class _ScriptEnded(Exception):
    """The caller has nothing more to do (script used up, end of input): they hang up."""


class _StaffPhone:
    """The staff member's keypad during the whisper: one scripted press (or none), then nothing."""

    def __init__(self, actions: list[Action]) -> None:
        self.actions = list(actions)

    def next(self, moment: Moment, hint: str) -> Action | None:
        return self.actions.pop(0) if self.actions else Action("silence")

    def follow_up(self, finish_keys: str) -> Action | None:
        return None


def parse_twiml(answer: Answer, url: str, kind: Literal["voice", "messaging"]) -> ET.Element:
    """The <Response> element of an answer; raise TwimlError (with Twilio's error code) when it is not TwiML."""
    if answer.content_type not in ("text/xml", "application/xml"):
        snippet = " ".join(answer.body.split())[:80]
        raise TwimlError(
            f"Twilio 12300 invalid Content-Type: {_short(url)} answered {answer.content_type or 'no type'}, "
            f"not TwiML (text/xml): {snippet!r}"
        )
    try:
        root = ET.fromstring(answer.body)
    except ET.ParseError as error:
        raise TwimlError(f"Twilio 12100 document parse failure: {_short(url)}: {error}") from None
    if root.tag != "Response":
        raise TwimlError(f"Twilio 12100 document parse failure: the root element is <{root.tag}>, not <Response>")
    return root


def check_attributes(element: ET.Element, transcript: Transcript) -> None:
    """Warn (as Twilio's debugger would) about attributes the verb does not have."""
    known = ATTRIBUTES.get(element.tag)
    if known is None:
        return
    for name in element.attrib:
        if name not in known:
            transcript.add("warning", f"Twilio 12200 schema validation: <{element.tag}> has no attribute {name!r}")


def _short(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


@dataclass(frozen=True)
class PhoneSetup:
    """Who calls whom, how requests are signed, and how the line is reached."""

    transport: Transport
    signer: Signer = field(default_factory=Signer)
    caller_number: str = DEFAULT_CALLER
    line_number: str = DEFAULT_LINE_NUMBER
    account_sid: str = DEFAULT_ACCOUNT_SID


def place_call(
    setup: PhoneSetup,
    caller: Caller,
    path: str = "/voice",
    out: TextIO | None = None,
    verbose: bool = False,
    speaker_folder: Path | None = None,
    speak: bool = False,
    width: int | None = None,
) -> CallResult:
    """Call the line at `path` and follow its TwiML until the call ends; return what happened."""
    transcript = Transcript(out, verbose, width)
    speaker = Speaker(transcript, speaker_folder) if (speak or speaker_folder) else None
    call_sid = new_sid("CA")
    params = {
        "CallSid": call_sid,
        "AccountSid": setup.account_sid,
        "From": setup.caller_number,
        "To": setup.line_number,
        "Caller": setup.caller_number,
        "Called": setup.line_number,
        "CallStatus": "ringing",
        "Direction": "inbound",
        "ApiVersion": API_VERSION,
    }
    requester = Requester(setup.transport, setup.signer)
    url = requester.absolute(path)
    signing = f"signed for {setup.signer.url_to_sign(url)}" if setup.signer.token else "unsigned: local mode"
    transcript.add("note", f"Calling {url} from {setup.caller_number} ({signing})")
    leg = Leg(requester, transcript, caller, params, speaker=speaker)
    result = CallResult(transcript, call_sid=call_sid)
    try:
        result.ended = leg.run(url)
    except _HungUp:
        result.ended = "you-hung-up"
    except _ScriptEnded:
        # Out of script, or end of input at the terminal (Ctrl-D): either way the caller hangs up.
        result.ended = "script-ended" if isinstance(caller, ScriptedCaller) else "you-hung-up"
    if speaker:
        speaker.end_turn()
        result.audio = list(speaker.files)
    result.requests = leg.requests
    if isinstance(caller, ScriptedCaller):
        result.leftover = list(caller.actions)
    endings = {
        "hangup": "the line hung up",
        "end-of-document": "the TwiML ran out, so Twilio hung up",
        "you-hung-up": "you hung up",
        "script-ended": "the script ran out, so you hung up",
        "rejected": "the line rejected the call",
        "error": "an error ended it",
    }
    transcript.add("end", f"call ended: {endings[result.ended]} ({result.requests} requests)")
    if result.leftover:
        unused = ", ".join(action.describe() for action in result.leftover)
        transcript.add("error", f"the call ended before the script did; unused: {unused}")
    return result


# -- a text conversation --------------------------------------------------------------------------


@dataclass(frozen=True)
class TextReply:
    """One text the line sent back."""

    body: str
    segments: Segments
    to: str = ""
    media: tuple[str, ...] = ()
    delivered: bool = True


@dataclass
class TextResult:
    """How a text conversation went."""

    transcript: Transcript
    replies: list[list[TextReply]] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        """Every error shown."""
        return self.transcript.of("error")

    @property
    def ok(self) -> bool:
        """No error."""
        return not self.errors


def text_line(
    setup: PhoneSetup,
    messages: Iterable[str],
    path: str = "/sms",
    out: TextIO | None = None,
    verbose: bool = False,
    twilio_opt_out: bool = True,
    width: int | None = None,
) -> TextResult:
    """Text each message to the line's messaging webhook and show its replies with segments and encoding.

    With `twilio_opt_out` the phone also plays Twilio's default opt-out handling on a long-code number:
    after STOP (and its synonyms) Twilio delivers nothing to this phone until START.
    """
    transcript = Transcript(out, verbose, width)
    result = TextResult(transcript)
    requester = Requester(setup.transport, setup.signer)
    url = requester.absolute(path)
    signing = f"signed for {setup.signer.url_to_sign(url)}" if setup.signer.token else "unsigned: local mode"
    transcript.add("note", f"Texting {url} from {setup.caller_number} ({signing})")
    opted_out = False
    for body in messages:
        if not body.strip():
            continue
        word = body.strip().upper()
        if twilio_opt_out and word in OPT_OUT_WORDS:
            opted_out = True
        elif twilio_opt_out and word in OPT_IN_WORDS:
            opted_out = False
        sid = new_sid("SM")
        segments = sms_segments(body)
        form = {
            "MessageSid": sid,
            "SmsSid": sid,
            "SmsMessageSid": sid,
            "AccountSid": setup.account_sid,
            "From": setup.caller_number,
            "To": setup.line_number,
            "Body": body,
            "NumMedia": "0",
            "NumSegments": str(segments.count),
            "SmsStatus": "received",
            "ApiVersion": API_VERSION,
            "FromCountry": "US",
            "ToCountry": "US",
        }
        transcript.add("you", f"{body}   [{segments.describe()}]")
        if twilio_opt_out and word in OPT_OUT_WORDS:
            transcript.add("note", "(Twilio itself confirms the opt-out; it delivers nothing more until START)")
        replies = _text_once(requester, transcript, url, form, opted_out)
        result.replies.append(replies)
    transcript.add("end", "conversation ended")
    return result


def _text_once(
    requester: Requester, transcript: Transcript, url: str, form: Mapping[str, str], opted_out: bool
) -> list[TextReply]:
    replies: list[TextReply] = []
    for _hop in range(10):
        try:
            sent_url, answer = requester.request("POST", url, form)
        except OSError as error:
            transcript.add("error", f"Twilio 11200 HTTP retrieval failure: cannot reach {url} ({error})")
            return replies
        transcript.add("request", f"POST {_short(sent_url)} -> {answer.status} {answer.content_type}")
        if not 200 <= answer.status < 300:
            transcript.add("error", f"Twilio 11200 HTTP retrieval failure: POST {_short(url)} answered {answer.status}")
            return replies
        if not answer.body.strip():
            transcript.add("note", "(no reply)")
            return replies
        try:
            root = parse_twiml(answer, url, "messaging")
        except TwimlError as error:
            transcript.add("error", str(error))
            return replies
        redirect = None
        for verb in root:
            check_attributes(verb, transcript)
            if verb.tag == "Message":
                replies.append(_show_message(verb, transcript, form["From"], opted_out))
            elif verb.tag == "Redirect" and (verb.text or "").strip():
                redirect = requester.absolute(verb.text or "", url)
                break
            else:
                transcript.add("error", f"Twilio 12200 schema validation: <{verb.tag}> is not a TwiML messaging verb")
                return replies
        if redirect is None:
            if not replies:
                transcript.add("note", "(no reply)")
            return replies
        url = redirect
    transcript.add("error", "ten <Redirect>s in a row: a redirect loop?")
    return replies


def _show_message(verb: ET.Element, transcript: Transcript, caller: str, opted_out: bool) -> TextReply:
    body_element = verb.find("Body")
    body = (body_element.text or "") if body_element is not None else (verb.text or "")
    body = body.strip()
    media = tuple((m.text or "").strip() for m in verb.findall("Media"))
    segments = sms_segments(body)
    to = verb.get("to", "")
    extras = [segments.describe(), f"{len(body)} characters"]
    if media:
        extras.append(f"media: {', '.join(media)}")
    who = "LINE" if not to or to == caller else f"LINE -> {to}"
    delivered = not (opted_out and who == "LINE")
    if not delivered:
        extras.append("NOT DELIVERED: Twilio 21610, this number opted out")
    transcript.add("line", f"{body}   [{'; '.join(extras)}]", who=who)
    if len(body) > 1600:
        transcript.add("error", f"Twilio 21617: a message body is {len(body)} characters; the limit is 1600")
    return TextReply(body, segments, to, media, delivered)


# -- command line ---------------------------------------------------------------------------------


def _default_url() -> str:
    return f"http://127.0.0.1:{os.environ.get('PORT', '5000')}"


@contextlib.contextmanager
def _in_process_line() -> Iterator[Transport]:
    """Build the line in this process on a throw-away SQLite file; settings come from the environment."""
    from ivr import create_app

    with tempfile.TemporaryDirectory(prefix="careline-phone-") as folder:
        app = create_app(
            {
                "DATABASE_URL": f"sqlite:///{Path(folder) / 'careline.sqlite3'}",
                "SECRET_KEY": os.environ.get("SECRET_KEY") or secrets.token_hex(32),
            }
        )
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
                transport = stack.enter_context(_in_process_line())
            else:
                transport = HttpTransport(args.url or _default_url())
            setup = PhoneSetup(transport, signer, args.caller_number, args.line_number, account)
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


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
