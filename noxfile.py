"""Every command a developer or CI runs: `nox -l` lists them.

Set-up is part of each session: a fresh machine needs only nox (`pipx install "nox[uv]"`).
The pipeline sessions share one virtualenv with the pinned lock (requirements.txt +
requirements-dev.txt) in .nox/_pipeline, and LocalStack gets its own Python >= 3.13 one in
.nox/_localstack (localstack-core needs 3.13 and pins boto3 and moto versions that clash with
Airflow's). Each is rebuilt only when its lock changes. `nox -s doctor` checks the machine first
(host_stack/doctor.py, standard library only).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).parent
sys.path.insert(0, str(ROOT))  # host_stack.doctor: standard library only, usable before any venv
from host_stack import doctor  # noqa: E402

PYTHON_VERSION = (3, 11)
PYTHON = "3.11"
LOCK = ("requirements.txt", "requirements-dev.txt")
LOCALSTACK_LOCK = ROOT / "envs/local/localstack-requirements.txt"
# The EMR bootstrap's hashed subset of requirements.txt (orchestration/artifact.py) and its input.
EMR_LOCK_IN = ROOT / "envs/aws/bootstrap/requirements-emr.in"
EMR_LOCK = ROOT / "envs/aws/bootstrap/requirements-emr.txt"
LOCALSTACK_VENV = ROOT / ".nox/_localstack"
PIPELINE_VENV = ROOT / ".nox/_pipeline"
# Part of each virtualenv's stamp: bump it when _venv builds differently, so existing ones rebuild.
VENV_RECIPE = "2: compiled bytecode"

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "tests"]


def _pins(*names: str) -> list[str]:
    """name==version for each name, read from the lock files (the one place versions live)."""
    pins: dict[str, str] = {}
    for lock in LOCK:
        for line in (ROOT / lock).read_text().splitlines():
            match = re.match(r"^([A-Za-z0-9_.\-\[\],]+)==([^\s;]+)", line)
            if match:
                pins[match.group(1).split("[")[0].lower()] = line.split(";")[0].strip()
    missing = [name for name in names if name.lower() not in pins]
    if missing:
        raise nox.command.CommandFailed(f"{missing} not pinned in {LOCK}; add to requirements*.in")
    return [pins[name.lower()] for name in names]


def _find_python(version: tuple[int, int], exact: bool, override_var: str) -> str:
    """An interpreter of `version` (or newer unless exact), found as `nox -s doctor` finds it."""
    try:
        return doctor.find_python(version, exact, override_var)
    except doctor.PythonNotFoundError as exc:
        raise nox.command.CommandFailed(str(exc)) from None


def _venv(
    session: nox.Session, venv: Path, base: str, locks: list[Path], *, then: tuple[str, ...] = ()
) -> Path:
    """A virtualenv holding exactly `locks`, rebuilt only when a lock or the recipe changes.

    --no-deps: the locks are complete, and requirements.txt deliberately leaves out
    pyspark-client, which the Spark provider asks for but full pyspark replaces (overrides.txt).
    Bytecode is compiled at install: every stack, Spark and test process imports from here, and
    with PYTHONDONTWRITEBYTECODE set (as on CI) nothing would ever be cached. `then`: arguments
    for the new venv's python, run once after the install."""
    python = venv / "bin/python"
    stamp = venv / ".lock-sha256"
    recipe = f"{VENV_RECIPE}:{' '.join(then)}".encode()
    digest = hashlib.sha256(b"".join(lock.read_bytes() for lock in locks) + recipe).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text() == digest:
        return python
    session.log(f"building {venv.relative_to(ROOT)} from {[str(lock.name) for lock in locks]}")
    shutil.rmtree(venv, ignore_errors=True)
    requirements = [arg for lock in locks for arg in ("-r", str(lock))]
    uv = _uv()
    if uv:
        session.run_install(uv, "venv", "--quiet", "--python", base, str(venv), external=True)
        session.run_install(
            uv, "pip", "install", "--quiet", "--no-deps", "--compile-bytecode",
            "--python", str(python), *requirements,
            external=True,
        )  # fmt: skip
    else:
        session.run_install(base, "-m", "venv", str(venv), external=True)
        session.run_install(
            str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--compile",
            *requirements,
            external=True,
        )  # fmt: skip
    if then:
        session.run_install(str(python), *then, external=True, env={"PYTHONPATH": str(ROOT)})
    stamp.write_text(digest)
    return python


def _pipeline_env(session: nox.Session) -> dict[str, str]:
    """The environment every pipeline session runs in: one shared virtualenv with the whole lock
    (Airflow, Spark, test tools), whose bin/ is first on PATH because Airflow and
    SparkSubmitOperator spawn `airflow` and `spark-submit` by name, plus LocalStack's Python."""
    python = _venv(
        session,
        PIPELINE_VENV,
        _find_python(PYTHON_VERSION, exact=True, override_var="PIPELINE_BASE_PYTHON"),
        [ROOT / lock for lock in LOCK],
        then=("-m", "host_stack.bytecode"),
    )
    localstack = _venv(
        session,
        LOCALSTACK_VENV,
        _find_python(doctor.LOCALSTACK_PYTHON, exact=False, override_var="LOCALSTACK_BASE_PYTHON"),
        [LOCALSTACK_LOCK],
    )
    return {
        "PATH": f"{python.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "VIRTUAL_ENV": str(PIPELINE_VENV),
        "PYSPARK_PYTHON": str(python),
        "LOCALSTACK_PYTHON": str(localstack),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYTHONPATH": str(ROOT),
    }


def _run(session: nox.Session, env: dict[str, str], *args: str, **kwargs) -> str | bool | None:
    """Run a command of the pipeline virtualenv (never the host's namesake)."""
    program = Path(env["VIRTUAL_ENV"]) / "bin" / args[0]
    return session.run(str(program), *args[1:], env=env, external=True, **kwargs)


def _uv() -> str | None:
    found = shutil.which("uv")
    if found:
        return found
    try:
        from uv import find_uv_bin  # installed by nox[uv]
    except ImportError:
        return None
    return find_uv_bin()


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check, ruff format --check, then every pre-commit hook on every file."""
    session.install(*_pins("ruff", "pre-commit"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("pre-commit", "run", "--all-files", "--show-diff-on-failure")


# Pipeline sessions share one virtualenv (.nox/_pipeline): the stack a session starts keeps
# using it, and a 1 GB environment is built once, not once per session.
pipeline_session = nox.session(venv_backend="none")


@pipeline_session
def tests(session: nox.Session) -> None:
    """Unit and component tests: real Spark, real LocalStack, real Airflow; moto only for EMR."""
    env = _pipeline_env(session)
    default = ["tests", "--ignore=tests/e2e", "--ignore=tests/faults", "--ignore=tests/ec2"]
    _run(session, env, "pytest", *(session.posargs or default))


@pipeline_session
def unit(session: nox.Session) -> None:
    """The quick loop: the tests that need no JVM and no LocalStack (about a minute).

    Config, DAGs (DagBag, EMR requests, moto runs), compose files, template, host stack, secrets.
    `nox -s tests` runs these and the Spark and LocalStack ones."""
    env = _pipeline_env(session)
    quick = ["-m", "not spark and not localstack"]
    _run(session, env, "pytest", "tests", "--ignore=tests/e2e", "--ignore=tests/faults",
         "--ignore=tests/ec2", *quick, *session.posargs)  # fmt: skip


@pipeline_session
def bench(session: nox.Session) -> None:
    """Benchmarks: figures to bench-results/ (JSON + markdown), never pass/fail on time."""
    env = _pipeline_env(session)
    _run(session, env, "python", "-m", "tests.benchmarks.run", *session.posargs)


@pipeline_session
def bench_e2e(session: nox.Session) -> None:
    """The developer loop's wall times (cold, warm, first after up) to bench-results/; the
    stack must be down. `-- --warm N --first N` sets how many cycles (about 10 min)."""
    env = _pipeline_env(session)
    _run(session, env, "python", "-m", "tests.benchmarks.e2e_loop", *session.posargs)


@nox.session(name="doctor", venv_backend="none")
def doctor_session(session: nox.Session) -> None:
    """Check this machine before anything is built: Java, Pythons, ports, disk, memory, Docker."""
    findings = doctor.check_machine()
    for finding in findings:
        session.log(finding.line())
    if any(finding.blocking for finding in findings):
        session.error("fix the lines marked `missing` above, then run `nox -s doctor` again")


def _check_machine(session: nox.Session) -> None:
    """Stop at once, before building anything, when the machine lacks what the stack needs."""
    findings = doctor.check_machine(docker=False)
    for finding in findings:
        if finding.level != doctor.OK:
            session.warn(finding.line())
    if any(finding.blocking for finding in findings):
        session.error("this machine cannot run the stack yet: fix the lines above (nox -s doctor)")


@pipeline_session
def bench_docker(session: nox.Session) -> None:
    """The compose stacks' wall times to bench-results/: a cold start (images built), a start
    with images cached and warm e2e cycles, for the local and the aws stack (docs/docker.md)."""
    env = _pipeline_env(session)
    _run(session, env, "python", "-m", "host_stack.docker_engine", "start")
    _run(session, env, "python", "-m", "tests.benchmarks.docker_stacks", *session.posargs)


@pipeline_session
def up(session: nox.Session) -> None:
    """Start the local stack as host processes (LocalStack, Spark, Airflow); print the login."""
    _check_machine(session)
    env = _pipeline_env(session)
    _run(session, env, "python", "-m", "host_stack", "up", *session.posargs)


@pipeline_session
def down(session: nox.Session) -> None:
    """Stop every process of the local stack (`nox -s down -- --clean` also deletes .stack/)."""
    env = _pipeline_env(session)
    _run(session, env, "python", "-m", "host_stack", "down", *session.posargs)


@pipeline_session
def pipeline(session: nox.Session) -> None:
    """Run both DAGs for a day on the local stack, starting it if needed.

    `nox -s pipeline -- [--date 2026-01-15] [--dag data_processing] [--down]`."""
    _check_machine(session)
    env = _pipeline_env(session)
    _run(session, env, "python", "-m", "host_stack", "run-pipeline", *session.posargs)


@pipeline_session
def ls(session: nox.Session) -> None:
    """List objects in the local stack's S3: `nox -s ls -- processed/` (a prefix of the data
    bucket, or s3://bucket/prefix); no AWS CLI needed."""
    env = _pipeline_env(session)
    _run(session, env, "python", "-m", "host_stack", "ls", *session.posargs)


def _mode(session: nox.Session, default: str) -> tuple[str, list[str]]:
    """`--mode docker|host|auto` out of the posargs (the rest goes to pytest); auto: docker
    when an engine answers. CI always names the mode."""
    args, mode = list(session.posargs), default
    if "--mode" in args[:-1]:
        i = args.index("--mode")
        mode = args.pop(i + 1)
        del args[i]
    if mode not in ("auto", "docker", "host"):
        session.error(f"--mode {mode!r}: expected docker, host or auto")
    if mode == "auto":
        mode = "docker" if doctor.docker_engine_answers() else "host"
        session.log(f"{mode} mode ({'a' if mode == 'docker' else 'no'} Docker engine answers)")
    return mode, args


def _host_stack_env(session: nox.Session, env: dict[str, str]) -> dict[str, str]:
    """Start the host-mode stack if needed; the environment its clients (the tests) get."""
    _run(session, env, "python", "-m", "host_stack", "up")
    out = _run(session, env, "python", "-m", "host_stack", "env", "--json", silent=True)
    return env | json.loads(str(out).strip().splitlines()[-1])


@pipeline_session
def e2e_local(session: nox.Session) -> None:
    """End-to-end tests through Airflow's REST API and S3 on the local stack.

    `-- --mode host|docker` picks the stack (default auto: docker when an engine answers). Host
    mode starts the processes if needed and leaves them up for the next cycle (`nox -s e2e_local
    down` stops them); docker mode builds and starts docker-compose.yml + docker-compose.local.yml,
    runs the same tests through Celery, Postgres and Redis, and takes the stack down."""
    mode, pytest_args = _mode(session, "auto")
    env = _pipeline_env(session)
    if mode == "docker":
        _run(session, env, "python", "-m", "host_stack.compose", "e2e", "--stack", "local",
             *pytest_args)  # fmt: skip
        return
    _run(session, _host_stack_env(session, env), "pytest", "tests/e2e", *pytest_args)


@pipeline_session
def docker_engine(session: nox.Session) -> None:
    """A Docker engine for the compose stacks: nothing where one answers; on Linux as root
    without one, Debian's docker.io and a dockerd started in the background. `-- stop` stops
    only a dockerd this started. Links the locked Compose CLI as `docker compose` if needed."""
    env = _pipeline_env(session)
    _run(session, env, "python", "-m", "host_stack.docker_engine", *session.posargs)


@pipeline_session
def docker_images(session: nox.Session) -> None:
    """Where no registry answers: build stand-ins for the compose stacks' third-party images
    from Debian's packages and PyPI, and record them in .env (docs/docker.md)."""
    env = _pipeline_env(session)
    _run(session, env, "python", "-m", "host_stack.docker_engine", "start")
    _run(session, env, "python", "-m", "host_stack.docker_images", *session.posargs)


@pipeline_session
def compose(session: nox.Session) -> None:
    """One step of a compose stack: `-- up|down|env [--stack local|aws] [--build]`."""
    env = _pipeline_env(session)
    _run(session, env, "python", "-m", "host_stack.compose", *(session.posargs or ["up"]))


@pipeline_session
def build_jobs(session: nox.Session) -> None:
    """Build the EMR job artifact in dist/spark_jobs/ (`-- --upload` also uploads it).

    The upload goes to s3://<DATA_BUCKET>/<EMR_JOB_ARTIFACT_PREFIX>/ of PIPELINE_ENV."""
    env = _pipeline_env(session)
    _run(session, env, "python", "-m", "orchestration.artifact", "--out", "dist/spark_jobs",
         *session.posargs)  # fmt: skip


@pipeline_session
def deploy(session: nox.Session) -> None:
    """Deploy the aws environment (envs/aws/cloudformation.yaml) by CloudFormation change sets.

    `nox -s deploy -- --target aws` shows what would change; add `--confirm` to apply.
    `--target localstack` runs the same deploy on emulated AWS, where a stand-in instance boots
    it, then stops everything (nox -s deploy_rehearsal also runs the tests on it)."""
    env = _pipeline_env(session) | {"PIPELINE_ENV": "aws"}
    args = list(session.posargs)
    target = args.index("--target") if "--target" in args[:-1] else None
    if target is not None and args[target + 1] == "localstack":
        # Emulated AWS and a stand-in instance; orchestration/ knows nothing of them.
        del args[target : target + 2]
        _run(session, env, "python", "-m", "host_stack.ec2_rehearsal", "deploy", *args)
        return
    _run(session, env, "python", "-m", "orchestration.deploy", *args)


@pipeline_session
def deploy_rehearsal(session: nox.Session) -> None:
    """The EC2 deploy rehearsed offline (docs/aws.md, "First deploy"): the deploy to emulated
    AWS on a Docker --internal network, a stand-in instance that boots it from the release, then
    tests/e2e through a forwarded port and tests/ec2 (a roll-out keeps the history, a release
    that does not match its digest is refused); everything is removed at the end. Needs a Docker
    engine (nox -s docker_engine) and, without a registry, the stand-ins (nox -s docker_images).
    `-- up` / `-- down` keep the booted instance up / remove it; other arguments go to pytest."""
    env = _pipeline_env(session)
    args = list(session.posargs)
    action = args.pop(0) if args[:1] in (["up"], ["down"]) else "run"
    _run(session, env, "python", "-m", "host_stack.ec2_rehearsal", action, *args)


@pipeline_session
def e2e_aws(session: nox.Session) -> None:
    """The e2e tests against the deployed aws environment: Airflow through the SSM port forward
    (AIRFLOW_API_URL), S3 in the account of your credentials. Skips, saying why, without them."""
    env = _pipeline_env(session) | {"PIPELINE_ENV": "aws"}
    out = _run(session, env, "python", "-m", "orchestration.deploy", "--e2e-target", silent=True)
    target = json.loads(str(out).strip().splitlines()[-1])
    if "skip" in target:
        session.skip(target["skip"])
    env.update(target["env"])
    # Each DAG run waits for an EMR cluster to start (~10 min) besides the job itself.
    env.setdefault("E2E_RUN_TIMEOUT", os.environ.get("E2E_RUN_TIMEOUT", "3600"))
    _run(session, env, "pytest", "tests/e2e", *session.posargs)


@pipeline_session
def e2e_aws_emulated(session: nox.Session) -> None:
    """The same end-to-end tests on the aws environment's DAGs against emulated AWS.

    PIPELINE_ENV=aws: the EMR flow (create cluster, step, terminate) with the real Amazon
    provider operators, EMR served by host_stack's EMR emulator, S3 and IAM by LocalStack.
    `-- --mode host` (default) starts that stack as processes and leaves it up (`nox -s down`
    stops it); `-- --mode docker` runs docker-compose.yml as the EC2 instance does, plus
    envs/aws/docker-compose.rehearsal.yml (LocalStack, the EMR emulator), and takes it down."""
    mode, pytest_args = _mode(session, "host")
    env = _pipeline_env(session)
    if mode == "docker":
        _run(session, env, "python", "-m", "host_stack.compose", "e2e", "--stack", "aws",
             *pytest_args)  # fmt: skip
        return
    env = _host_stack_env(session, env | {"PIPELINE_ENV": "aws"})
    _run(session, env, "pytest", "tests/e2e", *pytest_args)


@pipeline_session
def faults(session: nox.Session) -> None:
    """Fault injection on the local stack.

    `-- --mode host` (default): a killed job, a LocalStack restart, a lost Spark worker, on the
    host-mode stack (started if needed, left up: `nox -s faults down` stops it). `-- --mode
    docker`: the production shape's faults (the Celery worker killed mid-task, Redis and
    Postgres restarted) on the compose stack, which is started, tested and taken down."""
    mode, pytest_args = _mode(session, "host")
    env = _pipeline_env(session)
    if mode == "docker":
        compose = ("python", "-m", "host_stack.compose")
        try:
            _run(session, env, *compose, "up", "--stack", "local")
            out = _run(session, env, *compose, "env", "--stack", "local", "--json", silent=True)
            env |= json.loads(str(out).strip().splitlines()[-1])
            _run(session, env, "pytest", "tests/faults/test_compose_faults.py", *pytest_args)
        finally:
            _run(session, env, *compose, "down", "--stack", "local")
        return
    env = _host_stack_env(session, env)
    _run(session, env, "pytest", "tests/faults", "--ignore=tests/faults/test_compose_faults.py",
         *pytest_args)  # fmt: skip


@nox.session(python=PYTHON, venv_backend="none")
def lock(session: nox.Session) -> None:
    """Regenerate the pinned locks from requirements*.in (needs uv)."""
    uv = _uv() or "uv"
    common = ["pip", "compile", "--universal", "--python-version", PYTHON]
    common += ["--override", "overrides.txt"]
    session.run(uv, *common, "requirements.in", "-o", "requirements.txt", external=True)
    session.run(uv, *common, "requirements-dev.in", "-o", "requirements-dev.txt", external=True)
    session.run(
        uv, *common, "requirements-docker.in", "-o", "requirements-docker.txt", external=True
    )
    # The EMR bootstrap's subset of requirements.txt, with hashes (pip --require-hashes).
    session.run(sys.executable, "-m", "orchestration.artifact", "--write-emr-lock-input",
                str(EMR_LOCK_IN), external=True)  # fmt: skip
    session.run(
        uv, "pip", "compile", "--universal", "--python-version", PYTHON, "--generate-hashes",
        str(EMR_LOCK_IN.relative_to(ROOT)), "-o", str(EMR_LOCK.relative_to(ROOT)), external=True,
    )  # fmt: skip
    session.run(
        uv, "pip", "compile", "--python-version", "3.13", "--exclude-newer", "2026-03-24",
        "envs/local/localstack-requirements.in", "-o", str(LOCALSTACK_LOCK.relative_to(ROOT)),
        external=True,
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit("run me with nox: `nox -l` lists the sessions")
