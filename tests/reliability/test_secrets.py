"""No secret in the repository or its history: detect-secrets over every tracked file and every
file version of every commit, judged against .secrets.baseline (the audited exceptions).

pre-commit runs the same scanner on each commit (detect-secrets-hook with the baseline); this
test also covers what a hook cannot: commits made without it, and files deleted since.
In the tracked files a finding is accepted only when the baseline lists it (same file, type and
hash) and an audit did not mark it as a real secret, as in the hook. In the history, a value the
baseline accepts (type and hash) is accepted in any file: e.g. LocalStack's dummy key `test` in a
test before its line got its pragma. Lines marked `# pragma: allowlist secret` are filtered, and
the baseline file itself is skipped (it holds hashes), as in the hook.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
BASELINE = REPO_ROOT / ".secrets.baseline"


@dataclass(frozen=True)
class Finding:
    path: str
    type: str
    hashed_secret: str
    line_number: int
    where: str  # "working tree" or a commit id

    def __str__(self) -> str:
        return f"{self.where}: {self.path}:{self.line_number}: {self.type}"


def git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=60
    ).stdout


def in_git_checkout() -> bool:
    if shutil.which("git") is None:
        return False
    probe = subprocess.run(
        ["git", "rev-parse", "--is-inside-work-tree"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return probe.returncode == 0 and probe.stdout.strip() == "true"


pytestmark = pytest.mark.skipif(
    not in_git_checkout(), reason=f"{REPO_ROOT} is not a git checkout (no history to scan)"
)


def load_baseline() -> dict:
    return json.loads(BASELINE.read_text())


def accepted(baseline: dict) -> set[tuple[str, str, str]]:
    """(file, type, hash) of every audited finding not marked as a real secret."""
    return {
        (path, item["type"], item["hashed_secret"])
        for path, items in baseline["results"].items()
        for item in items
        if item.get("is_secret") is not True
    }


def scan(files: Iterable[tuple[Path, str, str]], baseline: dict) -> list[Finding]:
    """detect-secrets, with the baseline's plugins and filters, over (root, path, where) files."""
    from detect_secrets.core import scan as ds_scan
    from detect_secrets.settings import transient_settings

    found = []
    config = {key: baseline[key] for key in ("plugins_used", "filters_used")}
    with transient_settings(config):
        for root, path, where in files:
            if path == BASELINE.name:
                continue
            for secret in ds_scan.scan_file(str(root / path)):
                found.append(
                    Finding(path, secret.type, secret.secret_hash, secret.line_number or 0, where)
                )
    return found


def unaudited(findings: Iterable[Finding], baseline: dict, *, any_file: bool = False) -> list:
    """The findings the baseline does not accept (in that file, or in any file)."""
    ok = accepted(baseline)
    if any_file:
        values = {(kind, hashed) for _, kind, hashed in ok}
        return [f for f in findings if (f.type, f.hashed_secret) not in values]
    return [f for f in findings if (f.path, f.type, f.hashed_secret) not in ok]


def test_no_unaudited_secret_in_the_tracked_files():
    baseline = load_baseline()
    tracked = [p for p in git("ls-files", "-z").split("\0") if p and (REPO_ROOT / p).is_file()]
    found = scan([(REPO_ROOT, path, "working tree") for path in tracked], baseline)
    new = unaudited(found, baseline)
    assert not new, (
        "detect-secrets found secrets not in .secrets.baseline:\n  "
        + "\n  ".join(map(str, new))
        + "\nRemove them (and rotate them if real). A false positive: mark the line "
        "`# pragma: allowlist secret`, or run `detect-secrets scan --baseline .secrets.baseline` "
        "and `detect-secrets audit .secrets.baseline`."
    )


def test_no_unaudited_secret_anywhere_in_the_history(tmp_path):
    if git("rev-parse", "--is-shallow-repository").strip() == "true":
        pytest.skip("shallow clone: the history is incomplete; run `git fetch --unshallow`")
    baseline = load_baseline()
    # Every (path, blob) that any commit on any ref ever held, each scanned once.
    versions: dict[tuple[str, str], str] = {}
    for commit in git("rev-list", "--all").split():
        for entry in git("ls-tree", "-r", "-z", commit).split("\0"):
            if not entry:
                continue
            meta, path = entry.split("\t", 1)
            mode, kind, blob = meta.split()
            if kind == "blob" and mode != "120000":  # files, not symlinks or submodules
                versions.setdefault((path, blob), commit[:12])
    assert versions, "git rev-list --all found no files; is this the project's repository?"
    # Write each version out under its own path (the filters look at file names), blob by blob.
    blobs = sorted({blob for _, blob in versions})
    contents = dict(zip(blobs, _cat_blobs(blobs), strict=True))
    files = []
    for n, ((path, blob), commit) in enumerate(sorted(versions.items())):
        root = tmp_path / str(n)
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(contents[blob])
        files.append((root, path, f"commit {commit}"))
    new = unaudited(scan(files, baseline), baseline, any_file=True)
    assert not new, (
        "detect-secrets found secrets in the git history that .secrets.baseline does not list:\n  "
        + "\n  ".join(map(str, new))
        + "\nA real secret in history must be rotated, then removed from history "
        "(git filter-repo); a false positive is audited into .secrets.baseline."
    )


def _cat_blobs(blobs: list[str]) -> list[bytes]:
    """The contents of the blobs, through one `git cat-file --batch` process."""
    result = subprocess.run(
        ["git", "cat-file", "--batch"],
        cwd=REPO_ROOT,
        input="".join(f"{blob}\n" for blob in blobs).encode(),
        capture_output=True,
        check=True,
        timeout=120,
    )
    out, contents, at = result.stdout, [], 0
    for blob in blobs:
        header_end = out.index(b"\n", at)
        sha, _kind, size = out[at:header_end].split()
        assert sha.decode() == blob, f"git cat-file answered {sha!r} for {blob}"
        start = header_end + 1
        contents.append(out[start : start + int(size)])
        at = start + int(size) + 1  # the content is followed by a newline
    return contents


def test_the_scanner_finds_a_planted_key_the_baseline_does_not_list(tmp_path):
    """The check above can fail: an AWS key in a file is found and is not accepted."""
    key_id = "AKIA" + "Z7Q4" + "WJ3KX5" + "LMN2PQ"  # assembled so this file holds no key
    (tmp_path / "leak.env").write_text(f"AWS_ACCESS_KEY_ID={key_id}\n")
    baseline = load_baseline()
    found = scan([(tmp_path, "leak.env", "planted")], baseline)
    assert any(f.type == "AWS Access Key" for f in found), found
    assert unaudited(found, baseline) == found
    assert unaudited(found, baseline, any_file=True) == found
