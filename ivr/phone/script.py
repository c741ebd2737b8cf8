"""What the caller does: scripted actions (`--keys`, `--script`) or a person typing at the terminal."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol, TextIO

ActionKind = Literal["keys", "speech", "silence", "hangup", "record", "dial"]
DIAL_OUTCOMES = ("accept", "decline", "no-key", "busy", "no-answer", "failed")
_KEY_CHARS = frozenset("0123456789*#")


class ScriptError(ValueError):
    """A script line the phone cannot understand."""


@dataclass(frozen=True)
class Action:
    """One thing the caller (or the staff phone) does."""

    kind: ActionKind
    value: str = ""

    def describe(self) -> str:
        """How the action reads in the transcript."""
        if self.kind == "keys":
            return f"press {' '.join(self.value)}"
        if self.kind == "speech":
            return f'say "{self.value}"'
        if self.kind == "record":
            return f'(speaks after the beep) "{self.value}"'
        if self.kind == "dial":
            return f"dial:{self.value} (what the staff phones do)"
        if self.kind == "silence":
            return "(says nothing)"
        return "hang up"


def parse_actions(text: str) -> list[Action]:
    """Actions from a `--keys` string: `5 * say hospice say "living will" silence 0 dial:busy hangup`."""
    try:
        tokens = shlex.split(text, comments=False, posix=True)
    except ValueError as error:
        raise ScriptError(f"cannot read {text!r}: {error}") from None
    actions: list[Action] = []
    position = 0
    while position < len(tokens):
        word = tokens[position]
        position += 1
        if word.lower() in ("say", "record", "press"):
            if position >= len(tokens):
                raise ScriptError(f"'{word}' needs something after it")
            actions.append(_action(word.lower(), tokens[position]))
            position += 1
        else:
            actions.append(_action(word, ""))
    return actions


def parse_script(lines: Iterable[str]) -> list[Action]:
    """Actions from a script file: one per line (or several keys/words), `//` comments, blank lines skipped."""
    actions: list[Action] = []
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("//"):
            continue
        word, _, rest = line.partition(" ")
        try:
            if word.lower() in ("say", "record"):
                actions.append(_action(word.lower(), _unquote(rest.strip())))
            else:
                actions.extend(parse_actions(line))
        except ScriptError as error:
            raise ScriptError(f"line {number}: {error}") from None
    return actions


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def _action(word: str, argument: str) -> Action:
    lowered = word.lower()
    if lowered == "say":
        if not argument.strip():
            raise ScriptError("'say' needs words after it")
        return Action("speech", argument.strip())
    if lowered == "record":
        return Action("record", argument.strip()) if argument.strip() else Action("silence")
    if lowered == "press":
        word = argument
    if word and set(word) <= _KEY_CHARS:
        return Action("keys", word)
    if lowered in ("silence", "wait", "timeout"):
        return Action("silence")
    if lowered in ("hangup", "hang-up"):
        return Action("hangup")
    if lowered.startswith("dial:") and lowered[5:] in DIAL_OUTCOMES:
        return Action("dial", lowered[5:])
    raise ScriptError(
        f"{word!r} is not an action: use keys (5, *, #, 123#), say <words>, silence, hangup, record <message>, "
        f"or dial:{'|'.join(DIAL_OUTCOMES)}"
    )


Moment = Literal["gather", "dial", "record", "record-end"]
_ALLOWED: Mapping[Moment, frozenset[str]] = {
    "gather": frozenset({"keys", "speech", "silence", "hangup"}),
    "dial": frozenset({"dial", "hangup"}),
    "record": frozenset({"record", "silence", "hangup", "keys"}),
    "record-end": frozenset({"keys", "hangup", "silence"}),
}


class Caller(Protocol):
    """Whoever holds the phone: a script or a person at the terminal."""

    def next(self, moment: Moment, hint: str) -> Action | None:
        """What the caller does now; None when they have nothing more (the script ran out, end of input)."""
        ...

    def follow_up(self, finish_keys: str) -> Action | None:
        """After a recorded message: a finish key, `hangup`, or None to press the usual finish key."""
        ...


def _is_finish_key(action: Action, finish_keys: str) -> bool:
    return action.kind == "keys" and len(action.value) == 1 and action.value in finish_keys


class ScriptedCaller:
    """Plays actions in order; a wrong kind of action for the moment is a script error."""

    def __init__(self, actions: Iterable[Action]) -> None:
        self.actions = list(actions)

    def next(self, moment: Moment, hint: str) -> Action | None:
        if not self.actions:
            return None
        action = self.actions[0]
        if action.kind not in _ALLOWED[moment]:
            raise ScriptError(f"the script says {action.describe()!r}, but the call is at a <{moment}>: {hint}")
        return self.actions.pop(0)

    def follow_up(self, finish_keys: str) -> Action | None:
        upcoming = self.actions[0] if self.actions else None
        if upcoming and (upcoming.kind == "hangup" or _is_finish_key(upcoming, finish_keys)):
            return self.actions.pop(0)
        return None


class TerminalCaller:
    """Asks a person at the terminal what to do next."""

    PROMPTS: Mapping[Moment, str] = {
        "gather": 'your turn: keys (0-9 * #), "say <words>", Enter = silence, "hangup" > ',
        "dial": "what do staff do? 1 answer and press 1 (accept), 2 press 2 (decline), 3 answer but press "
        "nothing, 4 busy, 5 no answer, 6 fail, or hangup > ",
        "record": 'type your message (Enter alone = say nothing, "hangup") > ',
        "record-end": 'Enter = press # (or another finish key), or "hangup" > ',
    }

    def __init__(self, read: Callable[[str], str] = input, out: TextIO = sys.stdout) -> None:
        self.read = read
        self.out = out

    def next(self, moment: Moment, hint: str) -> Action | None:
        while True:
            try:
                typed = self.read(self.PROMPTS[moment]).strip()
            except (EOFError, KeyboardInterrupt):
                self.out.write("\n")
                return None
            try:
                action = self._understand(moment, typed)
            except ScriptError as error:
                self.out.write(f"   {error}\n")
                continue
            if action.kind in _ALLOWED[moment]:
                return action
            self.out.write(f"   {action.describe()!r} does not fit here.\n")

    def follow_up(self, finish_keys: str) -> Action | None:
        action = self.next("record-end", "")
        if action and (action.kind == "hangup" or _is_finish_key(action, finish_keys)):
            return action
        return None

    @staticmethod
    def _understand(moment: Moment, typed: str) -> Action:
        if moment == "dial" and typed in ("1", "2", "3", "4", "5", "6"):
            return Action("dial", DIAL_OUTCOMES[int(typed) - 1])
        if moment == "record" and typed and typed.lower() != "hangup" and not set(typed) <= _KEY_CHARS:
            return Action("record", typed)
        if not typed:
            return Action("silence")
        actions = parse_script([typed])
        if len(actions) != 1:
            raise ScriptError("one action at a time, please")
        return actions[0]
