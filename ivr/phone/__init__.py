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

The package, one module per role: transport.py (reaching the line, signing as Twilio signs),
script.py (what the caller does), twiml.py (the one TwiML interpreter: a call leg verb by verb),
texting.py (a text conversation), transcript.py, speech.py (espeak-ng), cli.py (this command line).
"""

from ivr.phone.cli import build_parser, main
from ivr.phone.local import answers, free_port, line_environment
from ivr.phone.script import (
    Action,
    Caller,
    ScriptedCaller,
    ScriptError,
    TerminalCaller,
    parse_actions,
    parse_script,
)
from ivr.phone.speech import Speaker, espeak_rate, espeak_voice
from ivr.phone.texting import Segments, TextReply, TextResult, sms_segments, text_line
from ivr.phone.transcript import Entry, Transcript
from ivr.phone.transport import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_CALLER,
    DEFAULT_LINE_NUMBER,
    Answer,
    AppTransport,
    HttpTransport,
    PhoneSetup,
    Requester,
    Signer,
    Transport,
    new_sid,
)
from ivr.phone.twiml import CallResult, Leg, TwimlError, parse_document, parse_twiml, place_call, spoken_text

__all__ = [
    "DEFAULT_ACCOUNT_SID",
    "DEFAULT_CALLER",
    "DEFAULT_LINE_NUMBER",
    "Action",
    "Answer",
    "AppTransport",
    "CallResult",
    "Caller",
    "Entry",
    "HttpTransport",
    "Leg",
    "PhoneSetup",
    "Requester",
    "ScriptError",
    "ScriptedCaller",
    "Segments",
    "Signer",
    "Speaker",
    "TerminalCaller",
    "TextReply",
    "TextResult",
    "Transcript",
    "Transport",
    "TwimlError",
    "answers",
    "build_parser",
    "espeak_rate",
    "espeak_voice",
    "free_port",
    "line_environment",
    "main",
    "new_sid",
    "parse_actions",
    "parse_document",
    "parse_script",
    "parse_twiml",
    "place_call",
    "sms_segments",
    "spoken_text",
    "text_line",
]  # fmt: skip
