"""One loop that brings any `Plan` (host_stack/plan.py) up, and one that stops it.

`bring_up` checks the ports of what it will start, then goes round: it starts every service whose
dependencies hold (compose's conditions: started, healthy, completed), asks each started one
whether it is ready, ends one-shots, and fails, with the log's tail, when a daemon dies or a
required one-shot fails. It returns when every service is healthy or completed. What already
runs (recorded and alive) is not started again, only waited for. Stopping is
`ProcessTable.stack_processes` + `ProcessTable.stop` (host_stack/processes.py).

Why a loop of our own: supervisor and circus supervise daemons from a config file through a
daemon of their own, honcho runs a Procfile; none has readiness-gated dependencies or one-shots
that others wait for, which are the point here. tenacity and stamina retry one call; this waits
on many services at once. Restarts stay with host_stack/supervise.py, process handling with psutil.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from host_stack.plan import COMPLETED, HEALTHY, ONE_SHOT, STARTED, Plan, Service
from host_stack.processes import ProcessTable, check_ports_free, tail
from host_stack.stack_settings import StackError

Report = Callable[[str], None]
POLL_SECONDS = 0.5


@dataclass
class _Progress:
    """Where each service of the plan stands during one `bring_up`."""

    plan: Plan
    running: set[str]
    started: set[str] = field(default_factory=set)  # by this call
    accepting: set[str] = field(default_factory=set)
    healthy: set[str] = field(default_factory=set)  # daemons ready, one-shots completed
    detail: dict[str, str] = field(default_factory=dict)

    def holds(self, service: Service) -> bool:
        """Whether every dependency of `service` meets its condition."""
        for name, condition in service.depends_on.items():
            if condition == STARTED and name not in self.accepting | self.healthy:
                return False
            if condition in (HEALTHY, COMPLETED) and name not in self.healthy:
                return False
        return True

    def waiting(self) -> list[str]:
        return [name for name in self.plan.names() if name not in self.healthy]


def bring_up(plan: Plan, table: ProcessTable, report: Report, timeout: float) -> list[str]:
    """Start what is not running, wait until all is ready; return the names started now."""
    began = time.monotonic()
    progress = _Progress(plan, set(table.running()))
    to_start = [s for s in plan.daemons() if s.name not in progress.running]
    check_ports_free(port for s in to_start for port in s.ports)
    if progress.running:
        report(f"already running: {', '.join(sorted(progress.running))}")

    def elapsed() -> str:
        return f"{time.monotonic() - began:.0f}s"

    while progress.waiting():
        for service in plan.services:
            if service.name in progress.healthy or not progress.holds(service):
                continue
            if service.name not in progress.started and service.name not in progress.running:
                _start(service, progress, table, report, elapsed)
            else:
                _look(service, progress, table, report, elapsed)
        if progress.waiting():
            if time.monotonic() > began + timeout:
                details = "; ".join(
                    f"{k}: {progress.detail.get(k, 'starting')}" for k in progress.waiting()
                )
                raise StackError(
                    f"the local stack was not ready after {timeout:.0f}s ({details}); "
                    f"logs are in {table.log_dir}"
                )
            time.sleep(POLL_SECONDS)
    report(f"{plan.name} up in {elapsed()}")
    return sorted(progress.started)


def _start(
    service: Service, progress: _Progress, table: ProcessTable, report: Report, elapsed
) -> None:
    """Start one service whose dependencies hold (or skip a one-shot with nothing to do)."""
    skip = service.one_shot and (
        (service.done is not None and service.done())
        or (service.after_start_of is not None and service.after_start_of not in progress.started)
    )
    if skip:
        progress.healthy.add(service.name)
        return
    if service.prepare is not None:
        service.prepare()
    if service.action is not None:
        report(service.title)
        line = service.action()
        progress.started.add(service.name)
        progress.healthy.add(service.name)
        report(f"  {line} ({elapsed()})")
        return
    report(service.title if service.one_shot else f"starting {service.title}")
    table.spawn(service.name, list(service.command), service.env, cwd=service.cwd)
    progress.started.add(service.name)


def _look(
    service: Service, progress: _Progress, table: ProcessTable, report: Report, elapsed
) -> None:
    """Ask a started service how it is: ended, accepting, ready."""
    name = service.name
    if service.lifecycle == ONE_SHOT:
        code = table.exit_code(name)
        if code is None and name not in progress.started:
            # Started by an earlier `up` that did not wait for it: done once it has ended.
            if not table.running().get(name):
                progress.healthy.add(name)
            return
        if code is None:
            return
        table.forget(name)  # a one-shot that ended is no longer running
        progress.healthy.add(name)
        line = service.finish(code) if service.finish else _required(service, code, table)
        report(f"  {line} ({elapsed()})")
        return
    record = table.records().get(name)
    if record is not None and not record.alive():
        raise StackError(
            f"{name} exited during start-up (exit code {table.exit_code(name)}); last lines "
            f"of {record.log}:\n{tail(record.log)}"
        )
    if service.accepting is not None and service.accepting()[0]:
        progress.accepting.add(name)
    if service.ready is None:
        ok, progress.detail[name] = True, "started"
    else:
        ok, progress.detail[name] = service.ready()
    if ok:
        progress.accepting.add(name)
        progress.healthy.add(name)
        if service.ready is not None:
            report(f"  {name} ready ({elapsed()})")


def _required(service: Service, code: int, table: ProcessTable) -> str:
    """The line for a one-shot that must succeed; StackError with its log's tail when not."""
    if code != 0:
        log = table.log_dir / f"{service.name}.log"
        raise StackError(f"{service.title} failed (exit {code}); last lines of {log}:\n{tail(log)}")
    return f"{service.name} done"
