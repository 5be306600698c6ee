"""The developer loop's wall times, with the commands a developer types: `nox -s bench_e2e`.

Figures, never pass/fail on time. Each one is the wall time of a `nox` command run from here,
on the host-mode stack (the fast loop) even where a Docker engine answers (`bench_docker` times
the compose stacks):

  cold    `nox -s e2e_local` with the virtualenvs built and nothing running, after
          `nox -s down -- --clean` deleted .stack/ (so Airflow's database is migrated again
          and `up` warms a new Spark Connect server up): goal at most 180 s
  warm    `nox -s e2e_local` again, the stack still up (--warm N cycles): goal at most 60 s
  first   `nox -s down`, `nox -s up`, then `nox -s e2e_local`: the first cycle on a new stack,
          which is a warm cycle too (--first N stacks): goal at most 60 s

Writes bench-results/e2e_local.json and bench-results/e2e_local.md (the table docs/performance.md
quotes), each command's output to bench-results/e2e_local-logs/, and leaves the stack down.
It refuses to start while a stack is up: the cold run deletes its state.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.benchmarks.run import RESULTS, ROOT, measured_on, table_head, write_results

GOALS = {"cold": 180.0, "warm": 60.0, "first": 60.0}
# pytest's last line: "5 passed, 1 skipped in 52.51s (0:00:52)".
_PYTEST_SUMMARY = re.compile(r"=+ (?P<outcome>.*?) in (?P<seconds>[\d.]+)s")


class BenchError(RuntimeError):
    """A command of the benchmark failed: its figures would mean nothing."""


def nox_command() -> list[str]:
    """How to call nox from here: the `nox` on PATH (what the README installs)."""
    found = shutil.which("nox")
    if found is None:
        raise BenchError('nox is not on PATH; install it (README): pipx install "nox[uv]"')
    return [found]


def pytest_summary(output: str) -> tuple[str, float] | None:
    """The outcome ("5 passed, 1 skipped") and seconds of the last pytest summary line."""
    matches = list(_PYTEST_SUMMARY.finditer(output))
    if not matches:
        return None
    last = matches[-1]
    return last["outcome"], float(last["seconds"])


class Runner:
    """Runs `nox` commands, keeps their output under `log_dir`, and times them."""

    def __init__(self, nox: list[str], log_dir: Path) -> None:
        self.nox = nox
        self.log_dir = log_dir
        self.count = 0

    def run(self, label: str, *args: str) -> tuple[float, str]:
        self.count += 1
        log = self.log_dir / f"{self.count:02d}-{label}.log"
        started = time.perf_counter()
        result = subprocess.run(
            [*self.nox, *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
        )
        seconds = time.perf_counter() - started
        log.write_text(result.stdout)
        if result.returncode != 0:
            tail = "\n".join(result.stdout.splitlines()[-40:])
            raise BenchError(
                f"`nox {' '.join(args)}` exited {result.returncode} after {seconds:.0f} s "
                f"(log {log}):\n{tail}"
            )
        return seconds, result.stdout

    def cycle(self, label: str) -> dict[str, Any]:
        """One `nox -s e2e_local`: its wall time and its tests' own time."""
        seconds, output = self.run(label, "-s", "e2e_local", "--", "--mode", "host")
        summary = pytest_summary(output)
        if summary is None:
            raise BenchError(f"no pytest summary in the output of {label}")
        outcome, tests_seconds = summary
        return {"seconds": round(seconds, 1), "tests_seconds": tests_seconds, "tests": outcome}


def running_components() -> list[str]:
    from host_stack.stack import Stack, StackSettings

    return sorted(Stack(settings=StackSettings.from_env()).running())


def measure(runner: Runner, warm: int, first: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    runner.run("down-clean", "-s", "down", "--", "--clean")
    results["cold"] = runner.cycle("cold")
    results["warm"] = [runner.cycle(f"warm-{i + 1}") for i in range(warm)]
    results["first"] = []
    for i in range(first):
        runner.run(f"down-{i + 1}", "-s", "down")
        up_seconds, _ = runner.run(f"up-{i + 1}", "-s", "up")
        cycle = runner.cycle(f"first-{i + 1}")
        results["first"].append({"up_seconds": round(up_seconds, 1)} | cycle)
    return results


def _span(values: list[float]) -> str:
    low, high = min(values), max(values)
    return f"{low:.1f} s" if low == high else f"{low:.1f}-{high:.1f} s"


def markdown(results: dict[str, Any]) -> str:
    columns = ["`nox -s e2e_local`", "wall time", "its tests", "within the goal", "goal"]
    lines = table_head(results, columns)
    rows = [
        ("cold (virtualenvs built, `.stack/` deleted, nothing running)", [results["cold"]], "cold"),
        ("warm (the stack already up), each cycle", results["warm"], "warm"),
        ("the first cycle after `nox -s up` on a new stack", results["first"], "first"),
    ]
    for title, cycles, kind in rows:
        if not cycles:
            continue
        walls = [c["seconds"] for c in cycles]
        within = sum(w <= GOALS[kind] for w in walls)
        lines.append(
            f"| {title} | {_span(walls)} ({len(walls)}) "
            f"| {_span([c['tests_seconds'] for c in cycles])} "
            f"| {within} of {len(walls)} | <= {GOALS[kind]:.0f} s |"
        )
    if results["first"]:
        ups = [c["up_seconds"] for c in results["first"]]
        lines.append(f"| `nox -s up` before each first cycle | {_span(ups)} | | | |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm", type=int, default=3, help="warm cycles after the cold one")
    parser.add_argument("--first", type=int, default=2, help="new stacks, one cycle each")
    args = parser.parse_args(argv)
    running = running_components()
    if running:
        print(
            f"error: a stack is up ({', '.join(running)}); the cold run deletes its state. "
            "Stop it first: nox -s down",
            file=sys.stderr,
        )
        return 2
    log_dir = RESULTS / "e2e_local-logs"
    shutil.rmtree(log_dir, ignore_errors=True)
    log_dir.mkdir(parents=True)
    runner = Runner(nox_command(), log_dir)
    results: dict[str, Any] = {**measured_on(), "goals_seconds": GOALS}
    try:
        results |= measure(runner, args.warm, args.first)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        try:
            runner.run("down-last", "-s", "down")
        except BenchError as exc:
            print(f"error: {exc}", file=sys.stderr)
    write_results("e2e_local", results, markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
