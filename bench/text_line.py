"""How long the text line takes to decide on a text, by hand: `.venv/bin/python -m bench.text_line`.

Decisions are pure (no database), so this measures matching: keywords, topics with typos in two
languages, and urgent phrases, for short texts and for the longest text Twilio delivers (1600
characters, where a miss means trying typos against every word). Target: a long text well under
50 ms, so a burst of texts never keeps Twilio waiting (it allows 15 s per webhook).
"""

from __future__ import annotations

import random
import statistics
import string
import time

from ivr import text_dialog
from ivr.content import load_content

TEXTS = {
    "keyword": "HOSPICE",
    "number": "5",
    "typo in a sentence": "can you send info on paliative care pls 🙏",
    "no match": "thanks so much for everything you do",
    "spanish": "quiero informacion sobre el hospicio por favor",
    "urgent": "I can't breathe and I have chest pain",
    "1600 characters, no match": ("we went to the park and had lunch with the grandkids " * 40)[:1600],
}
# The worst case for typo matching: 1600 characters of words that are all different.
_letters = random.Random(7)
TEXTS["1600 characters, all new words"] = " ".join(
    "".join(_letters.choices(string.ascii_lowercase, k=_letters.randint(3, 10))) for _ in range(400)
)[:1600]


def main(rounds: int = 200) -> None:
    """Print the median and worst time of `decide` for each kind of text."""
    content = load_content()
    conversation = text_dialog.Conversation(lang="en")
    print(f"{'text':28} {'median ms':>10} {'worst ms':>10}")
    for name, text in TEXTS.items():
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            text_dialog.decide(content, conversation, text)
            times.append((time.perf_counter() - start) * 1000)
        print(f"{name:28} {statistics.median(times):10.3f} {max(times):10.3f}")


if __name__ == "__main__":
    main()
