"""Listen to the line without a phone: render every spoken text to a WAV file with espeak-ng.

`make audio` (python -m ivr.audio [folder]) writes build/audio/<lang>/<name>.wav for the opening, every
section part and every spoken prompt, at 150 words a minute in a voice of the right language, measures
each file's real length, and prints the longest. espeak-ng is not Polly, but a robot voice at the line's
planning rate is an honest check that what looks short on paper is short when said.
Needs the Debian packages espeak-ng (and sox, for `soxi -D` by hand); .ci/run installs both.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import wave
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ivr import readability, report
from ivr.content import PROMPTS_DIR, Content, load_content
from ivr.twiml import DIALLED_NUMBER

#: espeak-ng voices for the line's languages (US English; Latin American Spanish, the closest to es-US).
ESPEAK_VOICES = {"en": "en-us", "es": "es-419"}
DEFAULT_FOLDER = Path(__file__).resolve().parent.parent / "build" / "audio"


class AudioError(RuntimeError):
    """espeak-ng is missing or failed."""


@dataclass(frozen=True)
class Clip:
    """One rendered text: what it is, where its WAV file is, and how long it really plays."""

    lang: str
    kind: str  # opening | voice | prompt
    name: str
    text: str
    path: Path
    seconds: float

    @property
    def words(self) -> int:
        return readability.word_count(self.text)


def espeak() -> str:
    """The espeak-ng program, or AudioError saying how to install it."""
    program = shutil.which("espeak-ng")
    if not program:
        raise AudioError("espeak-ng is not installed: apt-get install -y espeak-ng sox (as .ci/run does)")
    return program


def wav_seconds(path: Path) -> float:
    """The real playing time of a WAV file."""
    with wave.open(str(path), "rb") as audio:
        return audio.getnframes() / float(audio.getframerate())


def speak_to_file(text: str, lang: str, path: Path, words_per_minute: int = readability.WORDS_PER_MINUTE) -> float:
    """Say `text` in `lang` into the WAV file `path`; return its length in seconds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    voice = ESPEAK_VOICES.get(lang, lang)
    # As the phone line's renderer does with <say-as interpret-as="digits">: 911 is "9 1 1".
    spoken = DIALLED_NUMBER.sub(lambda match: " ".join(match.group(1)), text)
    command = [espeak(), "-v", voice, "-s", str(words_per_minute), "-w", str(path), "--", spoken]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0 or not path.exists():
        raise AudioError(f"espeak-ng failed for {path.name}: {result.stderr.strip()[:200]}")
    return wav_seconds(path)


def texts_to_render(content: Content) -> list[tuple[str, str, str, str]]:
    """(lang, kind, name, text) for the opening, every section part and every spoken prompt."""
    items: list[tuple[str, str, str, str]] = []
    for code, language in content.languages.items():
        items.append((code, "opening", "opening", report.opening_text(content, code)))
        for section in language.sections.values():
            for number, part in enumerate(section.voice, start=1):
                items.append((code, "voice", f"section-{section.id}-{number}", part))
        values = report.sample_values(language)
        for name, text in language.voice.items():
            items.append((code, "prompt", f"prompt-{name}", report.filled(text, values)))
    return items


def render_all(content: Content, folder: Path = DEFAULT_FOLDER) -> list[Clip]:
    """Render every spoken text of `content` under `folder`/<lang>/; return the clips with their lengths."""
    espeak()  # fail early, with the install hint

    def render(item: tuple[str, str, str, str]) -> Clip:
        lang, kind, name, text = item
        path = folder / lang / f"{name}.wav"
        return Clip(lang, kind, name, text, path, speak_to_file(text, lang, path))

    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(render, texts_to_render(content)))


def main(argv: list[str] | None = None) -> int:
    """Render everything to the folder given (default build/audio) and print the longest clips."""
    args = sys.argv[1:] if argv is None else argv
    folder = Path(args[0]) if args else DEFAULT_FOLDER
    clips = render_all(load_content(PROMPTS_DIR), folder)
    print(f"Rendered {len(clips)} files under {folder} at {readability.WORDS_PER_MINUTE} words a minute.")
    for kind in ("opening", "voice"):
        for clip in sorted((c for c in clips if c.kind == kind), key=lambda c: -c.seconds)[:6]:
            print(f"  {clip.lang}/{clip.path.name:<34} {clip.seconds:5.1f} s  ({clip.words} words)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
