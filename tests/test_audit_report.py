"""`.ci/audit.py`: fails the build on a known vulnerability, says loudly when nothing could be audited."""

from __future__ import annotations

import importlib.util
from pathlib import Path

spec = importlib.util.spec_from_file_location("ci_audit", Path(__file__).resolve().parent.parent / ".ci" / "audit.py")
assert spec and spec.loader
audit = importlib.util.module_from_spec(spec)
spec.loader.exec_module(audit)


def test_a_vulnerable_pin_fails_the_build() -> None:
    data = {
        "dependencies": [
            {"name": "flask", "version": "3.1.3", "vulns": []},
            {"name": "jinja2", "version": "2.10", "vulns": [{"id": "PYSEC-2019-217", "fix_versions": ["2.10.1"]}]},
        ]
    }
    code, lines = audit.verdict(data, 1, "")
    assert code == 1
    assert "VULNERABLE jinja2 2.10: PYSEC-2019-217 (fixed in 2.10.1)" in lines


def test_a_clean_audit_passes() -> None:
    code, lines = audit.verdict({"dependencies": [{"name": "flask", "version": "3.1.3", "vulns": []}]}, 0, "")
    assert code == 0 and lines == ["pip-audit: 1 pinned package(s) audited, no known vulnerabilities."]


def test_packages_the_service_does_not_know_are_reported_as_not_audited_without_failing() -> None:
    skip = "Dependency not found on PyPI and could not be audited: flask (3.1.3)"
    code, lines = audit.verdict({"dependencies": [{"name": "flask", "skip_reason": skip}]}, 0, "")
    assert code == 0
    assert "NONE of them was audited" in lines[0]


def test_an_unreachable_service_is_reported_without_failing() -> None:
    errors = "requests.exceptions.ConnectionError: Max retries exceeded with url: /pypi/flask/3.1.3/json"
    code, lines = audit.verdict(None, 1, errors)
    assert code == 0 and "NOT AUDITED" in lines[0]


def test_any_other_failure_fails() -> None:
    code, _ = audit.verdict(None, 2, "usage: pip-audit [-h] ...\nerror: unrecognized arguments")
    assert code == 1
