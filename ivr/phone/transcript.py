"""What happens on the phone, entry by entry, printed as it happens."""

from __future__ import annotations

import shutil
import textwrap
from dataclasses import dataclass
from typing import Literal, TextIO

EntryKind = Literal["say", "line", "you", "staff", "note", "warning", "error", "request", "end"]
#: How each kind of entry starts in the terminal (speech and the line's own doings name who; notes are indented).
_HEADS: dict[str, str] = {
    "error": "!! ERROR: ", "warning": "!! WARNING: ", "you": "YOU: ", "staff": "STAFF: ",
    "request": "   > ", "end": "-- ",
}  # fmt: skip


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
        elif entry.kind == "line":
            head = f"{entry.who}: "
        else:
            head = _HEADS.get(entry.kind, "   ")
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
