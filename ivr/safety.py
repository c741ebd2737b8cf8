"""Hear danger before anything else: is what a person said or texted an emergency, a crisis or distress?

Pure (no Flask, no Twilio): the phone dialog (ivr/call_dialog.py) asks `classify` at every <Gather> and the
text line (ivr/text_dialog.py) for every text, BEFORE any topic or keyword, so a crisis phrase can never
land on a section. The phrases are data (prompts/<lang>/urgent.yaml). Every language's phrases are
checked whatever the conversation's language: "quiero morir" in an English call is still heard.

Matching is ivr/matching.py's: case, accents, punctuation, apostrophes and filler words never matter;
texts also forgive small typos in longer words (`typos=True`); speech, already spelled by a recogniser,
is matched on whole words. When phrases of several kinds are found, the first of URGENT_KINDS wins
(emergency, then crisis, then distress): the most pressing answer is the one said first.
"""

from __future__ import annotations

from dataclasses import dataclass

from ivr.content import URGENT_KINDS, Content
from ivr.matching import Said

EMERGENCY, CRISIS, DISTRESS = URGENT_KINDS


@dataclass(frozen=True)
class Urgent:
    """What was heard: the kind, the language whose phrase matched, and the section to offer after the
    answer ("" for none: the end-of-life topic for "I want to die at home", else the kind's own)."""

    kind: str
    lang: str
    offer_section: str = ""


def classify(content: Content, text: str | Said, lang: str, typos: bool = False) -> Urgent | None:
    """The urgent kind of `text` (said or texted in a conversation in `lang`), or None.

    `lang`'s phrases are looked at first, so a phrase both languages share answers in the caller's own.
    Pass a `Said` to share its prepared words (and the typo matches found) with the other look-ups of
    the same text.
    """
    said = text if isinstance(text, Said) else Said(text)
    if not said.words:
        return None
    order = [lang, *(code for code in content.languages if code != lang)]
    for kind in URGENT_KINDS:
        for fuzzy in (False, True) if typos else (False,):
            for code in order:
                words = content.languages[code].urgent if code in content.languages else None
                if words is None:
                    continue
                if words.kinds[kind].vocabulary.match(said, fuzzy=fuzzy):
                    return Urgent(kind, code, _offer(content, said, kind, code, typos))
    return None


def _offer(content: Content, said: Said, kind: str, lang: str, typos: bool) -> str:
    """The section offered after the answer: hospice for end-of-life wording, else the kind's own."""
    for language in content.languages.values():
        words = language.urgent
        if words is not None and words.end_of_life.match(said, fuzzy=typos):
            return words.end_of_life_section
    words = content.languages[lang].urgent
    return words.kinds[kind].offer_section if words is not None else ""
