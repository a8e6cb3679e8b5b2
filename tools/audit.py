"""``make audit``: pip-audit over the installed environment, and an honest verdict.

pip-audit reports "No known vulnerabilities found" (exit 0) even when it could not reach its
vulnerability database and skipped every package. This wrapper reads its JSON report and says
which of three things happened: vulnerabilities found (exit 1), every package audited and clean
(exit 0), or packages left unaudited (exit 3, naming how many and why), so an offline audit is
never mistaken for a clean one.

    python tools/audit.py [pip-audit args...]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

UNAUDITED_EXIT = 3


def run_pip_audit(extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "audit.json"
        cmd = [sys.executable, "-m", "pip_audit", "--local", "--progress-spinner", "off"]
        cmd += ["--format", "json", "--output", str(report), *extra]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if not report.exists():
            sys.stderr.write(proc.stderr)
            raise SystemExit(f"audit: pip-audit failed (exit {proc.returncode}) without a report")
        return json.loads(report.read_text())


def verdict(report: dict) -> tuple[int, list[str]]:
    """(exit code, lines to print) for a pip-audit JSON report."""
    deps = report.get("dependencies", [])
    skipped = [d for d in deps if "skip_reason" in d]
    vulnerable = [d for d in deps if d.get("vulns")]
    lines = [
        f"{d['name']} {d['version']}: {v['id']} (fixed in {v.get('fix_versions') or 'none'})"
        for d in vulnerable
        for v in d["vulns"]
    ]
    if vulnerable:
        summary = f"audit: {len(lines)} known vulnerabilities in {len(vulnerable)} packages"
        return 1, [*lines, summary]
    if skipped:
        reasons = Counter(d["skip_reason"].split(":")[0] for d in skipped)
        why = "; ".join(f"{n}x {r}" for r, n in reasons.most_common(3))
        return UNAUDITED_EXIT, [
            f"audit: NOT DONE for {len(skipped)} of {len(deps)} installed packages ({why}); "
            "the vulnerability database (PyPI / OSV) is probably unreachable from this machine"
        ]
    return 0, [f"audit: {len(deps)} installed packages audited, no known vulnerabilities"]


def main(argv: list[str]) -> int:
    code, lines = verdict(run_pip_audit(argv))
    print("\n".join(lines))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
