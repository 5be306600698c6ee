"""The README and docs/ name only commands that exist, and no internal work periods."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _sessions() -> set[str]:
    """Every nox session: its function name, or the name= it is registered under."""
    noxfile = (ROOT / "noxfile.py").read_text()
    names = set(re.findall(r'@nox\.session\([^)]*name="(\w+)"', noxfile))
    for decorator, function in re.findall(r"^(@\S+)\ndef (\w+)\(session", noxfile, re.MULTILINE):
        if "name=" not in decorator:
            names.add(function)
    return names


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_nox_session_a_doc_names_exists(doc: Path) -> None:
    text = doc.read_text()
    # The first session after -s anywhere; every session of a quoted `nox -s a b -- args`.
    sessions = set(re.findall(r"nox (?:--non-interactive )?-s (\w+)", text))
    for quoted in re.findall(r"`nox -s ([^`]+)`", text):
        sessions.update(quoted.split(" --")[0].split())

    assert sessions - _sessions() == set()


def test_the_readme_stays_a_short_guide() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= 350


def test_no_tracked_file_refers_to_numbered_work_periods() -> None:
    pattern = "session [0-9]"
    found = subprocess.run(
        ["git", "grep", "-n", "-i", "-E", pattern, "--", ".", ":!tests/unit/test_docs.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )

    assert found.returncode == 1, found.stdout  # 1: no match
