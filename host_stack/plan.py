"""The local stack as data: a `Plan` is the services of one stack, each a `Service`.

A service says what compose's services say: its command (or, for a small step of the stack's own,
a Python `action`) with its environment, what it `depends_on` and on which condition (started,
healthy, completed), how to tell it is ready, and its lifecycle: SUPERVISED (a daemon that runs
until `down`) or ONE_SHOT (runs to its end; `up` waits for it). `host_stack/stack.py` resolves
the settings once into a plan (host mode's local stack, or the emulated-aws one) and
`host_stack/runner.py` starts, waits for and stops any plan. Nothing here starts a process.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from host_stack.stack_settings import PortSetting

# Conditions of depends_on, as compose names them (service_started, _healthy,
# _completed_successfully). A one-shot that was skipped (already done) counts as completed.
STARTED, HEALTHY, COMPLETED = "started", "healthy", "completed"
# Lifecycles: compose's `restart: always` daemon, and its `restart: "no"` init container.
SUPERVISED, ONE_SHOT = "supervised", "one-shot"

# A readiness or liveness probe: (ok, what it saw).
Check = Callable[[], tuple[bool, str]]


@dataclass(frozen=True)
class Service:
    """One process (or one in-process step) of the stack, and how `up` treats it."""

    name: str
    # What it is, for the lines `up` prints ("Spark master on spark://127.0.0.1:7077").
    title: str
    lifecycle: str = SUPERVISED
    command: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    cwd: Path | None = None
    # A step in `up`'s own process instead of a command (a ONE_SHOT): returns what it did.
    action: Callable[[], str] | None = None
    depends_on: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # Healthy once this says so (None: as soon as it started).
    ready: Check | None = None
    # Started (for STARTED dependants) once this says so, e.g. a port accepts connections.
    accepting: Check | None = None
    ports: tuple[PortSetting, ...] = ()
    # Runs just before the start (directories, files the command reads).
    prepare: Callable[[], None] | None = None
    # A ONE_SHOT with nothing left to do (a stamp or an archive exists) is skipped.
    done: Callable[[], bool] | None = None
    # A ONE_SHOT that runs only when this `up` starts the named service (a warm-up).
    after_start_of: str | None = None
    # A ONE_SHOT's exit code -> the line to print; raises StackError to fail `up`.
    finish: Callable[[int], str] | None = None

    @property
    def one_shot(self) -> bool:
        return self.lifecycle == ONE_SHOT


@dataclass(frozen=True)
class Plan:
    """The services of one stack, in the order `up` considers them."""

    name: str
    services: tuple[Service, ...]

    def __post_init__(self) -> None:
        names = [s.name for s in self.services]
        for service in self.services:
            unknown = set(service.depends_on) - set(names)
            if unknown:
                raise ValueError(f"{service.name} depends on {sorted(unknown)}, not in {names}")

    def __getitem__(self, name: str) -> Service:
        for service in self.services:
            if service.name == name:
                return service
        raise KeyError(name)

    def names(self) -> list[str]:
        return [s.name for s in self.services]

    def daemons(self) -> list[Service]:
        return [s for s in self.services if s.lifecycle == SUPERVISED]

    def ports(self) -> list[PortSetting]:
        return [port for s in self.services for port in s.ports]
