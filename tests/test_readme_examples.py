"""The README's example call and texts are what the line says, so they cannot drift.

The README writes them in fenced blocks (```call and ```texts): `>   action` is the caller (the local
phone's script syntax: keys, `say <words>`, `hangup`; for texts, the message), `<   words` one line the
line says (an indented line continues the one above), and `<   ...` stands for lines left out. This
test plays the same actions with the local phone in its in-process mode (`python -m ivr.phone ...
--in-process`: the real app on a throw-away SQLite file, every request through Flask as Twilio would
send it) with no settings, the way the README's reader runs it, and compares turn by turn.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers.servers import run_phone

README = Path(__file__).resolve().parent.parent / "README.md"
ELIDED = "..."

Turn = list[str]


def readme_block(kind: str) -> list[str]:
    """The lines of the README's one fenced block of `kind` (call or texts)."""
    blocks = re.findall(rf"^```{kind}\n(.*?)^```$", README.read_text(encoding="utf-8"), flags=re.M | re.S)
    assert len(blocks) == 1, f"README.md should have exactly one ```{kind} block"
    return blocks[0].splitlines()


def parse_example(lines: list[str]) -> tuple[list[str], list[Turn]]:
    """The caller's actions, and what the line says before the first action and after each one."""
    actions: list[str] = []
    turns: list[Turn] = [[]]
    for line in lines:
        marker, text = line[:1], line[1:].strip()
        if marker == ">":
            actions.append(text)
            turns.append([])
        elif marker == "<":
            turns[-1].append(text)
        elif line.startswith("    ") and turns[-1] and text:
            turns[-1][-1] += " " + text
        else:
            assert not line.strip(), f"README example line not understood: {line!r}"
    return actions, turns


def matches(expected: Turn, said: Turn) -> bool:
    """Whether `said` is `expected`, where each `...` in `expected` stands for any lines (or none)
    and a line ending in `...` for any line that begins with the words before it."""
    pattern = "".join(
        r"(?:[^\n]*\n)*?" if line == ELIDED
        else re.escape(line[: -len(ELIDED)].rstrip()) + r"[^\n]*\n" if line.endswith(ELIDED)
        else re.escape(line) + r"\n"
        for line in expected
    )  # fmt: skip
    return re.fullmatch(pattern, "".join(f"{line}\n" for line in said)) is not None


def phone_output(*args: str) -> str:
    """What the local phone prints, in-process, on a line with no settings (local mode, no staff numbers)."""
    finished = run_phone(*args, "--in-process", "--width", "0")
    assert finished.returncode == 0, finished.stdout + finished.stderr
    return finished.stdout


def said_in_call(output: str) -> list[Turn]:
    """The words the line said, one list per turn: before the first action, then after each action."""
    turns: list[Turn] = [[]]
    for line in output.splitlines():
        if line.startswith("YOU:"):
            turns.append([])
        elif said := re.match(r"LINE(?: \[[a-zA-Z-]+\])?: (?!\(pause)(.*)", line):
            turns[-1].append(said.group(1).strip())
    return turns


def said_in_texts(output: str) -> list[Turn]:
    """Each reply's lines (and the phone's notes in parentheses), one list per text sent."""
    turns: list[Turn] = [[]]
    in_reply = False
    for line in output.splitlines():
        text = re.sub(r"\s{3}\[[^\]]*\]$", "", line).strip()  # the phone's [segments, encoding] note
        if line.startswith("YOU:"):
            turns.append([])
            in_reply = False
        elif line.startswith("LINE:"):
            turns[-1].append(text.removeprefix("LINE:").strip())
            in_reply = True
        elif line.startswith("   (") or line.startswith("--"):
            in_reply = False
            if line.startswith("   ("):
                turns[-1].append(text)
        elif in_reply:
            turns[-1].append(text)
    return turns


def compare(expected: list[Turn], said: list[Turn], actions: list[str]) -> None:
    assert len(said) == len(expected), f"the example has {len(expected)} turns, the line gave {len(said)}"
    for number, (want, got) in enumerate(zip(expected, said, strict=True)):
        after = f"after {actions[number - 1]!r}" if number else "at the start"
        assert matches(want, got), f"README example, {after}: the line says\n" + "\n".join(got)


def test_matching_honours_left_out_lines() -> None:
    said = ["a", "b c d", "e"]
    assert matches(["a", ELIDED, "e"], said)
    assert matches(["a", "b c ...", "e"], said)
    assert matches([ELIDED], said) and matches(["a", ELIDED], said)
    assert not matches(["a", "e"], said)
    assert not matches(["a", "b x ...", "e"], said)
    assert not matches(["a", "b c d"], said)


@pytest.mark.slow
def test_the_readme_call_is_what_the_line_says() -> None:
    actions, expected = parse_example(readme_block("call"))
    assert actions[-1] == "hangup" and len(actions) >= 3
    said = said_in_call(phone_output("call", "--keys", " ".join(quote(action) for action in actions)))
    compare(expected, said, actions)


@pytest.mark.slow
def test_the_readme_texts_are_what_the_line_answers() -> None:
    actions, expected = parse_example(readme_block("texts"))
    assert actions and all("|" not in action for action in actions)
    said = said_in_texts(phone_output("text", "--messages", "|".join(actions)))
    compare(expected, said, actions)


def quote(action: str) -> str:
    """One script action as `--keys` takes it: `say` followed by its words in quotes."""
    if action.startswith("say "):
        return f'say "{action.removeprefix("say ")}"'
    return action
