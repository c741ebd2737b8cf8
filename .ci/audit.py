"""Check every pinned package for known vulnerabilities (pip-audit), for CI.

`make audit` (and `.ci/run`) runs it with the project's .venv, over requirements.txt (what production
runs) and requirements-dev.txt (the tools; it includes requirements.txt). Both pin every package,
transitive ones too, so pip-audit checks exactly those lists (--no-deps --disable-pip: nothing is
installed or resolved). The vulnerability data comes from PyPI's JSON API.

Exit status: 1 when a pinned package has a known vulnerability (upgrade it); 0 otherwise, also when
the vulnerability service cannot be reached or does not know the packages. Then the report says,
in capitals, that the packages were NOT audited, so nobody mistakes that for a clean bill of health.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Words in pip-audit's error output that mean "the service could not be used", not "a vulnerability".
#: The pinned lists audited: the runtime lock and the tools.
REQUIREMENTS = ("requirements.txt", "requirements-dev.txt")
UNREACHABLE = ("connection", "timed out", "timeout", "resolve", "service", "max retries", "http", "ssl", "network")


def main() -> int:
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "audit.json"
        command = [
            sys.executable, "-m", "pip_audit",
            *(f"--requirement={ROOT / name}" for name in REQUIREMENTS),
            "--no-deps", "--disable-pip", "--progress-spinner", "off",
            "--format", "json", "--output", str(report),
        ]  # fmt: skip
        finished = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
        data = json.loads(report.read_text()) if report.exists() and report.stat().st_size else None

    code, lines = verdict(data, finished.returncode, finished.stderr.strip() or finished.stdout.strip())
    print("\n".join(lines))
    return code


def verdict(data: dict | None, exit_code: int, errors: str) -> tuple[int, list[str]]:
    """The exit status and report for pip-audit's JSON report `data` (None: it wrote none)."""
    if data is None:
        if any(word in errors.lower() for word in UNREACHABLE):
            last = errors.splitlines()[-1] if errors else ""
            return 0, ["pip-audit: the vulnerability service could not be reached: the requirements were NOT AUDITED.",
                       f"  {last}"]  # fmt: skip
        return 1, [f"pip-audit failed (exit {exit_code}):", errors]
    lines = []
    packages = data.get("dependencies", [])
    vulnerable = [package for package in packages if package.get("vulns")]
    skipped = [package for package in packages if package.get("skip_reason")]
    audited = len(packages) - len(skipped)
    for package in vulnerable:
        for vuln in package["vulns"]:
            fixes = ", ".join(vuln.get("fix_versions") or []) or "no fixed version yet"
            lines.append(f"VULNERABLE {package['name']} {package['version']}: {vuln['id']} (fixed in {fixes})")
    if skipped:
        reasons = Counter(package["skip_reason"].split(":")[0] for package in skipped)
        summary = "; ".join(f"{count} x {reason}" for reason, count in reasons.items())
        label = "NONE of them was audited" if not audited else f"{len(skipped)} were NOT AUDITED"
        lines.append(f"pip-audit: of {len(packages)} pinned packages, {label} ({summary}).")
        lines.append("  The vulnerability service did not answer for them: check again where PyPI's JSON API works.")
    if vulnerable:
        lines.append(f"pip-audit: {len(vulnerable)} pinned package(s) with known vulnerabilities: upgrade them.")
        return 1, lines
    if audited:
        lines.append(f"pip-audit: {audited} pinned package(s) audited, no known vulnerabilities.")
    return 0, lines


if __name__ == "__main__":
    sys.exit(main())
