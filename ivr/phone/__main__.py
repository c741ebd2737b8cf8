"""`python -m ivr.phone call|text ...`: the local phone (see ivr/phone/__init__.py)."""

import contextlib
import sys

from ivr.phone.cli import main

with contextlib.suppress(BrokenPipeError):
    sys.exit(main())
