"""SMS length: the GSM 03.38 alphabet and segment counting, against known answers."""

from __future__ import annotations

import pytest

from ivr import sms_segments


def test_the_alphabet_is_the_standard_one() -> None:
    assert len(sms_segments.GSM7_BASIC) == 127  # 128 code points less the escape
    assert len(sms_segments.GSM7_EXTENSION) == 10
    assert not sms_segments.GSM7_BASIC & sms_segments.GSM7_EXTENSION
    for text in ("Hello, world!", "@£$¥èéùìòÇØøÅå", "ΔΦΓΛΩΠΨΣΘΞÆæßÉ", "¡¿ÄÖÑÜ§äöñüà", "Msg & data rates may apply."):
        assert sms_segments.is_gsm7(text), text


@pytest.mark.parametrize("text", ["“quoted”", "it’s", "a – b", "a — b", "…", "á", "😊", "ç", "`"])
def test_characters_that_force_ucs2(text: str) -> None:
    assert sms_segments.encoding(text) == "UCS-2"
    assert sms_segments.non_gsm7(text)


@pytest.mark.parametrize(
    ("text", "units", "segments"),
    [
        ("", 0, 1),
        ("a" * 160, 160, 1),
        ("a" * 161, 161, 2),
        ("a" * 306, 306, 2),
        ("a" * 307, 307, 3),
        ("€" * 80, 160, 1),  # extension characters take two septets
        ("€" * 81, 162, 2),
        ("a" * 151 + "€" + "a" * 10, 163, 2),  # the escape pair ends part one exactly (153 septets)
        ("a" * 152 + "€" * 77, 306, 3),  # a pair never straddles two parts: 306 septets, yet three parts
        ("á" * 70, 70, 1),
        ("á" * 71, 71, 2),
        ("á" * 134, 134, 2),
        ("á" * 135, 135, 3),
        ("😊" * 35, 70, 1),  # outside the BMP: two UTF-16 units each
        ("a" * 66 + "😊", 68, 1),
        ("a" * 66 + "😊" * 34, 134, 3),  # nor does a surrogate pair: 134 units, yet three parts
    ],
)
def test_segment_counts(text: str, units: int, segments: int) -> None:
    length = sms_segments.measure(text)
    assert (length.units, length.segments) == (units, segments)
    assert sms_segments.fits(text) == (segments <= 2)


def test_limits() -> None:
    assert sms_segments.MAX_GSM7_CHARACTERS == 306
    assert sms_segments.MAX_UCS2_CHARACTERS == 134
