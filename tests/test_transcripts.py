"""Golden conversations: scripted calls (keys, speech, silence in) and everything the line says out.

Each tests/transcripts/*.yaml file is one call. `do` is what the caller (or Twilio) does; `hear` is
every sentence the line says in answer, in order; `ends` marks the step after which the line hangs up.
After a deliberate content change, regenerate with `make transcripts` and read the diff before
committing it: the diff is what callers will hear differently.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import app_config
from tests.helpers.support import Call

TRANSCRIPTS = sorted((Path(__file__).parent / "transcripts").glob("*.yaml"))
UPDATE = os.environ.get("UPDATE_TRANSCRIPTS") == "1"


def perform(call: Call, action: str) -> None:
    """Do one scripted action: `call PATH`, `press KEYS`, `say WORDS`, `silence`, `dial STATUS`,
    `staff-accepts`, `record SECONDS`."""
    verb, _, rest = action.partition(" ")
    if verb == "call":
        call.start(rest or "/voice")
    elif verb == "press":
        call.press(rest)
    elif verb == "say":
        call.say(rest)
    elif verb == "silence":
        call.silence()
    elif verb == "dial":
        call.post(call.action(), DialCallStatus=rest, DialCallSid="CA99", DialCallDuration="0")
    elif verb == "staff-accepts":
        # The staff member's leg: Twilio requests the whisper, the staff member presses 1.
        call.client_post("/voice/whisper/answer", Digits="1", ParentCallSid=call.call_sid, CallSid="CA99")
    elif verb == "record":
        seconds = int(rest)
        extra = {"RecordingDuration": str(seconds)}
        if seconds:
            extra["RecordingUrl"] = "https://api.twilio.com/2010-04-01/Accounts/AC0/Recordings/RE1"
            extra["RecordingSid"] = "RE1"
        call.post(call.action(), **extra)
    else:  # pragma: no cover - a typo in a transcript file
        raise ValueError(f"unknown transcript action {action!r}")


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=[p.stem for p in TRANSCRIPTS])
def test_transcript(path: Path, tmp_path: Path) -> None:
    script: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    from ivr import create_app

    app = create_app(app_config(tmp_path, **script.get("config", {})))
    call = Call(app.test_client())
    for number, step in enumerate(script["steps"], start=1):
        perform(call, step["do"])
        where = f"{path.name} step {number} ({step['do']})"
        if UPDATE:
            step["hear"] = list(call.heard)
            step["ends"] = call.ended()
            continue
        assert call.heard == step["hear"], where
        assert call.ended() == step.get("ends", False), where
    if UPDATE:
        path.write_text(yaml.safe_dump(script, allow_unicode=True, sort_keys=False, width=120), encoding="utf-8")
