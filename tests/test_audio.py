"""Listen to it: every spoken text rendered to WAV with espeak-ng at 150 words a minute, and timed for real.

The files stay in build/audio/<lang>/ for a person to listen to; `make audio`
renders the same files. espeak-ng is a Debian package that .ci/run installs: this test installs nothing.
"""

from __future__ import annotations

import shutil

import pytest

from ivr import audio, report
from ivr.content import load_content

pytestmark = pytest.mark.slow  # renders every spoken text with espeak-ng processes

#: espeak-ng pauses at every full stop and says numbers digit by digit: allow the opening 20% over its
#: 15-second budget in real time. Section parts get no allowance: the 60-second limit itself is the check.
OPENING_ALLOWANCE = 1.2


@pytest.fixture(scope="module")
def clips() -> list[audio.Clip]:
    if not shutil.which("espeak-ng"):
        pytest.fail("espeak-ng is missing: run `apt-get install -y espeak-ng sox` (.ci/run does this)")
    folder = audio.DEFAULT_FOLDER
    return audio.render_all(load_content(), folder)


def test_every_spoken_text_is_rendered_in_its_language(clips: list[audio.Clip]) -> None:
    content = load_content()
    for lang, language in content.languages.items():
        names = {clip.name for clip in clips if clip.lang == lang}
        assert {f"prompt-{name}" for name in language.voice} <= names
        for section in language.sections.values():
            assert {f"section-{section.id}-{n}" for n in range(1, len(section.voice) + 1)} <= names
        assert "opening" in names
    for clip in clips:
        assert clip.path.exists() and clip.path.stat().st_size > 1000, clip.path
        assert clip.path.parent.name == clip.lang


def test_every_section_part_really_plays_in_under_a_minute(clips: list[audio.Clip]) -> None:
    parts = [clip for clip in clips if clip.kind == "voice"]
    assert len(parts) >= 20
    for clip in parts:
        assert 5 < clip.seconds <= report.MAX_PART_SECONDS, f"{clip.lang}/{clip.path.name}: {clip.seconds:.1f} s"


def test_the_opening_really_plays_in_about_fifteen_seconds(clips: list[audio.Clip]) -> None:
    for clip in (c for c in clips if c.kind == "opening"):
        limit = report.MAX_OPENING_SECONDS * OPENING_ALLOWANCE
        assert 5 < clip.seconds <= limit, f"{clip.lang} opening plays {clip.seconds:.1f} s (limit {limit:.0f} s)"


def test_real_length_follows_the_word_count(clips: list[audio.Clip]) -> None:
    """The 150-words-a-minute estimate the content rules use is close to what a voice at that rate takes."""
    parts = [clip for clip in clips if clip.kind == "voice"]
    for clip in parts:
        estimate = clip.words * 60 / 150
        assert 0.7 * estimate <= clip.seconds <= 1.35 * estimate, f"{clip.lang}/{clip.name}: {clip.seconds:.1f} s"
