"""The compose stacks' wall times: `nox -s bench_docker`.

Figures, never pass/fail on time. For each compose stack (local: docker-compose.yml +
docker-compose.local.yml; aws: docker-compose.yml + envs/aws/docker-compose.rehearsal.yml):

  cold    the project's images built with no cache (`docker compose build --no-cache`; the base
          images, official or stand-in, stay: a registry pull on a laptop, `nox -s docker_images`
          here), then `nox -s compose -- up --stack S` until every service is healthy
  cached  `nox -s compose -- down`, then `up` again: a start with the images cached
  warm    the e2e tests (tests/e2e, as `nox -s e2e_local -- --mode docker` runs them) against the
          running stack, --warm N times

Writes bench-results/docker.json and bench-results/docker.md (the table docs/performance.md
quotes), each command's output to bench-results/docker-logs/, and leaves the stacks down. Needs an
answering engine (`nox -s docker_engine`) and whatever builds need (docs/docker.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Any

from tests.benchmarks.e2e_loop import BenchError, Runner, _span, nox_command, pytest_summary
from tests.benchmarks.run import RESULTS, ROOT, measured_on, table_head, write_results

STACKS = ("local", "aws")


def build_without_cache(stack_name: str, log_dir) -> float:
    """The stack's images built from their base images, every step run again."""
    from host_stack.compose import STACKS, compose_command

    stack = STACKS[stack_name]
    log = log_dir / f"{stack_name}-cold-build.log"
    started = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run(
            compose_command(stack, "build", "--no-cache", *stack.builds),
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, check=False,
        )  # fmt: skip
    if done.returncode != 0:
        raise BenchError(f"the {stack_name} images did not build (log {log})")
    return time.perf_counter() - started


def warm_cycle(runner: Runner, stack: str, label: str) -> dict[str, Any]:
    """The e2e tests against the running stack, with the environment the compose runner gives."""
    _, out = runner.run(f"{label}-env", "-s", "compose", "--", "env", "--stack", stack, "--json")
    (line,) = [line for line in out.splitlines() if line.startswith("{")]
    env = {**os.environ, **json.loads(line)}
    python = ROOT / ".nox" / "_pipeline" / "bin" / "python"
    log = runner.log_dir / f"{label}.log"
    started = time.perf_counter()
    result = subprocess.run(
        [str(python), "-m", "pytest", "tests/e2e", "-p", "no:cacheprovider"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        check=False,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    log.write_text(result.stdout)
    summary = pytest_summary(result.stdout)
    if result.returncode != 0 or summary is None:
        raise BenchError(f"the e2e tests on the {stack} stack failed (log {log})")
    return {"seconds": round(seconds, 1), "tests": summary[0]}


def measure(runner: Runner, stacks: list[str], warm: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for stack in stacks:
        compose = ("-s", "compose", "--")
        runner.run(f"{stack}-down-before", *compose, "down", "--stack", stack)
        build = build_without_cache(stack, runner.log_dir)
        up, _ = runner.run(f"{stack}-cold-up", *compose, "up", "--stack", stack)
        cold = build + up
        runner.run(f"{stack}-down", *compose, "down", "--stack", stack)
        cached, _ = runner.run(f"{stack}-cached-up", *compose, "up", "--stack", stack)
        cycles = [warm_cycle(runner, stack, f"{stack}-warm-{i + 1}") for i in range(warm)]
        runner.run(f"{stack}-down-after", *compose, "down", "--stack", stack)
        results[stack] = {
            "cold_build": round(build, 1),
            "cold_up": round(cold, 1),
            "cached_up": round(cached, 1),
            "warm": cycles,
        }
    return results


def markdown(results: dict[str, Any]) -> str:
    columns = ["compose stack", "cold: images built, healthy", "start, images cached",
               "warm e2e cycle", "its tests"]  # fmt: skip
    lines = table_head(results, columns)
    names = {"local": "local (laptop overlay)", "aws": "aws (EC2 file + rehearsal overlay)"}
    for stack in STACKS:
        if stack not in results:
            continue
        figures = results[stack]
        walls = [cycle["seconds"] for cycle in figures["warm"]]
        tests = sorted({cycle["tests"] for cycle in figures["warm"]})
        lines.append(
            f"| {names[stack]} | {figures['cold_up']:.1f} s (build {figures['cold_build']:.1f} s) "
            f"| {figures['cached_up']:.1f} s "
            f"| {_span(walls) if walls else ''} ({len(walls)}) | {'; '.join(tests)} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", choices=STACKS, action="append", help="default: both")
    parser.add_argument("--warm", type=int, default=2, help="e2e cycles on each running stack")
    args = parser.parse_args(argv)
    log_dir = RESULTS / "docker-logs"
    shutil.rmtree(log_dir, ignore_errors=True)
    log_dir.mkdir(parents=True)
    runner = Runner(nox_command(), log_dir)
    results: dict[str, Any] = measured_on()
    stacks = args.stack or list(STACKS)
    try:
        results |= measure(runner, stacks, args.warm)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        for stack in stacks:
            runner.run(f"{stack}-down-on-error", "-s", "compose", "--", "down", "--stack", stack)
        return 1
    write_results("docker", results, markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
