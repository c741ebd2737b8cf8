"""Speech through espeak-ng: each <Say> spoken aloud, or written to one WAV file per turn."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
import xml.etree.ElementTree as ET
from pathlib import Path

from ivr.phone.transcript import Transcript

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
