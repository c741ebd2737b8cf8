"""How long a text message is in SMS segments: the GSM 03.38 alphabet, spelled out, and UCS-2.

A text is sent in the GSM 7-bit alphabet when every character is in its basic table or its
extension table (extension characters take two septets: an escape and the character). Anything
else makes the whole message UCS-2. One segment holds 160 septets (GSM-7) or 70 UTF-16 code units
(UCS-2); a longer message is split into parts of 153 septets or 67 code units, because each part
carries a header that joins the parts again on the phone. A part never splits an escape pair or
a surrogate pair, which is why counting is done part by part and not by division.

The line keeps every texted message within MAX_SEGMENTS: 306 GSM-7 characters, or 134 in UCS-2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: The GSM 03.38 basic character set, row by row as in the standard (0x1B, the escape, left out).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)

#: The GSM 03.38 extension table: each costs two septets (escape + character).
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

SINGLE_GSM7 = 160
PART_GSM7 = 153
SINGLE_UCS2 = 70
PART_UCS2 = 67

#: The most segments any message from the line may take.
MAX_SEGMENTS = 2
#: What MAX_SEGMENTS holds: 306 GSM-7 characters, or 134 UCS-2 ones.
MAX_GSM7_CHARACTERS = PART_GSM7 * MAX_SEGMENTS
MAX_UCS2_CHARACTERS = PART_UCS2 * MAX_SEGMENTS

Encoding = Literal["GSM-7", "UCS-2"]


def is_gsm7(text: str) -> bool:
    """Whether `text` can be sent in the GSM 7-bit alphabet."""
    return all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text)


def non_gsm7(text: str) -> list[str]:
    """The characters of `text` that force UCS-2, each once, in order of appearance."""
    return list(dict.fromkeys(c for c in text if c not in GSM7_BASIC and c not in GSM7_EXTENSION))


def encoding(text: str) -> Encoding:
    """The encoding a phone network would use for `text`."""
    return "GSM-7" if is_gsm7(text) else "UCS-2"


def _units(text: str) -> list[int]:
    """The size of each character: septets in GSM-7, UTF-16 code units in UCS-2."""
    if is_gsm7(text):
        return [2 if c in GSM7_EXTENSION else 1 for c in text]
    return [2 if ord(c) > 0xFFFF else 1 for c in text]


@dataclass(frozen=True)
class Length:
    """How a message travels: its encoding, its size in septets or code units, and its segments."""

    encoding: Encoding
    units: int
    segments: int


def measure(text: str) -> Length:
    """Encoding, size and number of SMS segments of `text` (an empty text is one segment)."""
    kind = encoding(text)
    units = _units(text)
    single, part = (SINGLE_GSM7, PART_GSM7) if kind == "GSM-7" else (SINGLE_UCS2, PART_UCS2)
    total = sum(units)
    if total <= single:
        return Length(kind, total, 1)
    segments, used = 1, 0
    for size in units:
        if used + size > part:  # an escape or surrogate pair never straddles two parts
            segments += 1
            used = 0
        used += size
    return Length(kind, total, segments)


def segments(text: str) -> int:
    """How many SMS segments `text` takes."""
    return measure(text).segments


def fits(text: str, max_segments: int = MAX_SEGMENTS) -> bool:
    """Whether `text` goes out in at most `max_segments` segments."""
    return segments(text) <= max_segments
