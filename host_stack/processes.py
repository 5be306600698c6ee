"""The stack's processes: how one is started and recorded, and how all are found and stopped.

Each process starts in its own process group, with its output in <state_dir>/logs/<name>.log and
a record in <state_dir>/pids/<name>.json. Every process (and so every child) carries MARKER_ENV,
the state dir. Stopping does not trust the records alone: records can be lost or stale while the
processes run on, so `stack_processes` also finds them by the marker, by the stack's ports (a
listener there whose command line lies under this checkout), and by the process groups and
children of all of those.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from host_stack.stack_settings import REPO_ROOT, PortSetting, StackError, port_in_use

# Every process the stack starts (and all their children) carries this variable.
MARKER_ENV = "HOST_STACK_STATE_DIR"
# Airflow's processes retitle themselves (setproctitle), which by default overwrites the memory
# /proc/<pid>/environ is read from: the marker would vanish. This keeps the environment intact.
KEEP_ENVIRON = {"SPT_NOENV": "1"}


@dataclass(frozen=True)
class ProcessRecord:
    """One started process (the leader of its own process group), as kept in pids/<name>.json."""

    name: str
    pid: int
    create_time: float
    log: str
    command: str

    def process(self) -> psutil.Process | None:
        """The live process, or None if it exited or the pid now belongs to another process."""
        try:
            proc = psutil.Process(self.pid)
            if abs(proc.create_time() - self.create_time) > 0.5:
                return None
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc
        except psutil.Error:
            return None

    def alive(self) -> bool:
        return self.process() is not None


def tail(path: Path | str, lines: int = 30) -> str:
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text[-lines:])


def port_owner(port: int) -> str:
    """'pid N (name)' of the process listening on `port`, or '' when it cannot be told."""
    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections(kind="tcp"):
            listening = conn.status == psutil.CONN_LISTEN and conn.laddr
            if listening and conn.laddr.port == port and conn.pid:
                with contextlib.suppress(psutil.Error):
                    return f"pid {conn.pid} ({psutil.Process(conn.pid).name()})"
                return f"pid {conn.pid}"
    return ""


def check_ports_free(ports: Iterable[PortSetting]) -> None:
    """Fail naming every taken port, what needs it and the setting that moves it."""
    problems = []
    for port, what, env_name in ports:
        if port_in_use(port):
            owner = port_owner(port)
            by = f" by {owner}" if owner else ""
            problems.append(
                f"port {port} ({what}) is already in use{by}; stop that process or move the "
                f"{what} with {env_name}=<free port>"
            )
    if problems:
        raise StackError("cannot start the local stack:\n  " + "\n  ".join(problems))


@dataclass
class ProcessTable:
    """The processes of the stack whose state lives in `state_dir`."""

    state_dir: Path
    _children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)

    @property
    def pid_dir(self) -> Path:
        return self.state_dir / "pids"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    def records(self) -> dict[str, ProcessRecord]:
        records = {}
        for path in sorted(self.pid_dir.glob("*.json")) if self.pid_dir.is_dir() else []:
            with contextlib.suppress(OSError, ValueError, TypeError):
                records[path.stem] = ProcessRecord(**json.loads(path.read_text()))
        return records

    def running(self) -> dict[str, ProcessRecord]:
        return {name: rec for name, rec in self.records().items() if rec.alive()}

    def forget(self, name: str) -> None:
        (self.pid_dir / f"{name}.json").unlink(missing_ok=True)

    def forget_dead(self) -> None:
        for name, record in self.records().items():
            if not record.alive():
                self.forget(name)

    def spawn(
        self, name: str, command: list[str], env: Mapping[str, str], cwd: Path | None = None
    ) -> ProcessRecord:
        """Start `command` in its own process group, output to logs/<name>.log, and record it."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("ab") as log:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log.write(f"\n=== {stamp} {shlex.join(command)}\n".encode())
            log.flush()
            process = subprocess.Popen(
                command,
                env={**env, **KEEP_ENVIRON, MARKER_ENV: str(self.state_dir)},
                cwd=cwd or REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._children[name] = process
        record = ProcessRecord(
            name=name,
            pid=process.pid,
            create_time=psutil.Process(process.pid).create_time(),
            log=str(log_path),
            command=shlex.join(command),
        )
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        (self.pid_dir / f"{name}.json").write_text(json.dumps(asdict(record)) + "\n")
        return record

    def exit_code(self, name: str) -> int | None:
        """The exit code of a child this table started, once it ended (else None)."""
        child = self._children.get(name)
        return child.poll() if child is not None else None

    def reap(self) -> None:
        for name, child in list(self._children.items()):
            if child.poll() is not None:
                del self._children[name]

    # --- finding and stopping -------------------------------------------------------------------

    def marked(self) -> list[psutil.Process]:
        """Live processes carrying this stack's marker (started by it, maybe in other groups)."""
        found = []
        for proc in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if proc.environ().get(MARKER_ENV) == str(self.state_dir) and _live(proc):
                    found.append(proc)
        return [p for p in found if p.pid not in _self_and_parents()]

    def stack_processes(
        self, ports: Iterable[int] = (), *, unrecorded: bool = True
    ) -> list[psutil.Process]:
        """Every live process of this stack: the recorded groups and, with `unrecorded`, the
        marked processes and the listeners on `ports` that run from this checkout; with all
        their groups and children."""
        roots = {r.pid: r.process() for r in self.records().values()}
        found = {pid: proc for pid, proc in roots.items() if proc is not None}
        if unrecorded:
            listeners = _checkout_listeners(set(ports), self.state_dir)
            found.update((p.pid, p) for p in [*self.marked(), *listeners])
        groups = {_pgid(p) for p in found.values()} - {None, os.getpgid(0)}
        for proc in psutil.process_iter():
            if _pgid(proc) in groups and _live(proc):
                found.setdefault(proc.pid, proc)
        for proc in list(found.values()):
            with contextlib.suppress(psutil.Error):
                found.update((c.pid, c) for c in proc.children(recursive=True))
        mine = _self_and_parents()
        return [p for pid, p in found.items() if pid not in mine and _live(p)]

    def stop(self, procs: list[psutil.Process], timeout: float) -> None:
        """SIGTERM to each process and its group, then SIGKILL to what is left after `timeout`."""
        groups = {_pgid(p) for p in procs} - {None, os.getpgid(0)}
        for pgid in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGTERM)
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
        deadline = time.monotonic() + timeout
        alive = procs
        while alive and time.monotonic() < deadline:
            self.reap()
            _, alive = psutil.wait_procs(alive, timeout=0.2)
            alive = [p for p in alive if _live(p)]
        for pgid in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(alive, timeout=5)
        self.reap()


def _live(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _pgid(proc: psutil.Process) -> int | None:
    try:
        return os.getpgid(proc.pid)
    except (ProcessLookupError, PermissionError):
        return None


def _self_and_parents() -> set[int]:
    return {os.getpid(), *(p.pid for p in psutil.Process().parents())}


def _checkout_listeners(ports: set[int], state_dir: Path) -> list[psutil.Process]:
    """Processes listening on one of `ports` that run from this checkout: their command line or
    working directory lies under it or under the state dir (another checkout's stack on the
    same ports is left alone)."""
    places = [f"{REPO_ROOT}{os.sep}", f"{state_dir}{os.sep}"]
    found = []
    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status != psutil.CONN_LISTEN or not conn.pid or conn.laddr.port not in ports:
                continue
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(conn.pid)
                seen = [*proc.cmdline(), f"{proc.cwd()}{os.sep}"]
                if any(place in part for part in seen for place in places):
                    found.append(proc)
    return found
