"""Texting the line: each message POSTed as Twilio delivers it, each reply shown with its segments.

The phone also plays the carrier's part on a long-code number: Twilio answers its own opt-out words
itself (the line's `CARRIER_OPT_OUT_WORDS`) and delivers nothing more until an opt-in word.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, TextIO

from ivr.phone.transcript import Transcript
from ivr.phone.transport import API_VERSION, PhoneSetup, Requester, new_sid, short_url
from ivr.phone.twiml import TwimlError, check_attributes, parse_twiml
from ivr.sms_segments import measure
from ivr.text_dialog import CARRIER_OPT_OUT_WORDS

#: Twilio's default opt-in words on a long-code number: they lift its block after an opt-out word.
CARRIER_OPT_IN_WORDS = frozenset({"start", "yes", "unstop"})


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
    """Count the segments of `body` as a handset does, with the line's own GSM-7 table (ivr/sms_segments.py)."""
    length = measure(body)
    return Segments(length.encoding, length.segments, length.units)


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
        word = body.strip().casefold()
        if twilio_opt_out and word in CARRIER_OPT_OUT_WORDS:
            opted_out = True
        elif twilio_opt_out and word in CARRIER_OPT_IN_WORDS:
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
        if twilio_opt_out and word in CARRIER_OPT_OUT_WORDS:
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
        transcript.add("request", f"POST {short_url(sent_url)} -> {answer.status} {answer.content_type}")
        if not 200 <= answer.status < 300:
            failure = f"Twilio 11200 HTTP retrieval failure: POST {short_url(url)} answered {answer.status}"
            transcript.add("error", failure)
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
