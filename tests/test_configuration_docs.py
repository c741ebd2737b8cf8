"""docs/configuration.md documents every setting the line reads, with its default."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ivr.config import DEFAULTS, serving_settings

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def documented() -> dict[str, str]:
    """Each variable in the doc's tables, with its Default cell."""
    rows: dict[str, str] = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) >= 3:
            for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[0]):
                rows[name] = cells[1]
    return rows


SERVING = ("HOST", "PORT", "WEB_CONCURRENCY")  # ivr.config.serving_settings


@pytest.mark.parametrize("name", [*DEFAULTS, *SERVING])
def test_every_setting_is_documented_with_a_default(name: str) -> None:
    assert name in documented(), f"{name} (read by ivr/config.py) is missing from docs/configuration.md"
    assert documented()[name], f"{name} has no default in docs/configuration.md"


@pytest.mark.parametrize("name", [name for name, value in DEFAULTS.items() if isinstance(value, int)])
def test_numeric_defaults_match_the_code(name: str) -> None:
    # An on/off setting (a bool, so also an int) is written as it is set: 0 or 1.
    value = int(DEFAULTS[name]) if isinstance(DEFAULTS[name], bool) else DEFAULTS[name]
    assert documented()[name].split(" (")[0] == f"`{value}`"


def test_serving_defaults_match_the_code() -> None:
    defaults = serving_settings({}, cpu_count=1)
    assert documented()["HOST"] == f"`{defaults['host']}`"
    assert documented()["PORT"] == f"`{defaults['port']}`"


def test_every_variable_the_package_reads_is_documented() -> None:
    """Any other os.environ read in ivr/ (outside the DEFAULTS table) must be documented too."""
    package = Path(__file__).resolve().parent.parent / "ivr"
    read = set()
    for path in package.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        read |= set(re.findall(r"os\.environ(?:\.get)?[\[(]\s*[\"']([A-Z][A-Z0-9_]+)[\"']", text))
        read |= set(re.findall(r"getenv\(\s*[\"']([A-Z][A-Z0-9_]+)[\"']", text))
    assert read, "the scan found no environment reads at all: check its pattern"
    assert read - set(documented()) == set()
