"""Stand-ins for the compose stacks' third-party images, built where no registry can be reached.

    python -m host_stack.docker_images          # nox -s docker_images

Every third-party image the compose files and the Dockerfile use is a setting whose default is
today's official image (`${POSTGRES_IMAGE:-postgres:15-bookworm}`, the Dockerfile's ARG
PYTHON_IMAGE, ...). Users with a registry, or a mirror of one, never need this. Without one, this
builds each stand-in from Debian's packages (a `debootstrap` base imported with `docker import`,
then apt) and PyPI, tags it under the project's own name, and records the settings in .env, so
the README's plain `docker compose ...` commands use them. The stand-ins' Dockerfiles
(envs/local/images/) say what each honours of the official image and where the versions differ.

BUILD_CA_CERTIFICATES=/path/to/bundle.pem (the environment or .env) adds the CA certificates a
TLS-inspecting network needs to every image build: the file is copied into
envs/local/ca-certificates/ (untracked). Standard library only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from orchestration.compose_secrets import read_env_file

REPO_ROOT = Path(__file__).resolve().parent.parent
IMAGES_DIR = "envs/local/images"
CA_DIR = REPO_ROOT / "envs" / "local" / "ca-certificates"
CA_SETTING = "BUILD_CA_CERTIFICATES"
DEBIAN_MIRROR = "http://deb.debian.org/debian"


@dataclass(frozen=True)
class StandIn:
    """One official image, the setting that names it, and the stand-in built for it."""

    setting: str
    official: str
    name: str
    debian: str  # the Debian release its base is bootstrapped from

    @property
    def dockerfile(self) -> str:
        return f"{IMAGES_DIR}/{self.name.split('/')[1].split(':')[0]}.Dockerfile"


STANDINS = (
    StandIn(
        "PYTHON_IMAGE", "python:3.11-slim-bookworm", "builditall/python:3.11-bookworm", "bookworm"
    ),
    StandIn(
        "POSTGRES_IMAGE", "postgres:15-bookworm", "builditall/postgres:15-bookworm", "bookworm"
    ),
    StandIn("REDIS_IMAGE", "redis:7.2-bookworm", "builditall/redis:7.0-bookworm", "bookworm"),
    # The localstack-core release host mode runs (envs/local/localstack-requirements.txt).
    StandIn(
        "LOCALSTACK_IMAGE", "localstack/localstack:4.14.0", "builditall/localstack:2026.3.0",
        "trixie",
    ),
)  # fmt: skip


def debian_base(release: str) -> str:
    return f"builditall/debian:{release}"


def _image_exists(name: str) -> bool:
    probe = subprocess.run(["docker", "image", "inspect", name], capture_output=True, check=False)
    return probe.returncode == 0


def _run(command: list[str], **kwargs) -> None:
    print(f"+ {' '.join(command)}", flush=True)
    subprocess.run(command, check=True, **kwargs)


def build_debian_base(release: str) -> None:
    """A minimal Debian root filesystem (debootstrap), imported as an image."""
    if shutil.which("debootstrap") is None:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        _run(["apt-get", "update", "-qq"], env=env)
        _run(["apt-get", "install", "-y", "-qq", "debootstrap"], env=env)
    with tempfile.TemporaryDirectory(prefix=f"debian-{release}-") as root:
        _run(["debootstrap", "--variant=minbase", release, root, DEBIAN_MIRROR],
             stdout=subprocess.DEVNULL)  # fmt: skip
        tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
        _run(["docker", "import", "-", debian_base(release)], stdin=tar.stdout,
             stdout=subprocess.DEVNULL)  # fmt: skip
        if tar.wait() != 0:
            raise subprocess.CalledProcessError(tar.returncode, "tar")


def copy_ca_certificates(environ: Mapping[str, str], dotenv: Mapping[str, str]) -> str | None:
    """The CA bundle named by BUILD_CA_CERTIFICATES, copied where the image builds take it."""
    source = environ.get(CA_SETTING) or dotenv.get(CA_SETTING)
    if not source:
        return None
    path = Path(source).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{CA_SETTING}={source}: no such file; expected a PEM bundle")
    shutil.copyfile(path, CA_DIR / "build-ca-certificates.crt")
    return str(path)


def update_env_file(path: Path, settings: Mapping[str, str]) -> None:
    """Set KEY=value lines in a .env file, keeping every other line as it is."""
    lines = path.read_text().splitlines() if path.exists() else []
    pending = dict(settings)
    for i, line in enumerate(lines):
        key = line.split("=", 1)[0].strip()
        if "=" in line and key in pending:
            lines[i] = f"{key}={pending.pop(key)}"
    lines += [f"{key}={value}" for key, value in pending.items()]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)


def build(env_file: Path = REPO_ROOT / ".env", *, rebuild: bool = False) -> dict[str, str]:
    """Build every stand-in (on the Debian bases there are, unless `rebuild`) and record the
    settings."""
    copied = copy_ca_certificates(os.environ, read_env_file(env_file))
    if copied:
        print(f"extra CA certificates for the builds: {copied}", flush=True)
    for release in sorted({standin.debian for standin in STANDINS}):
        if rebuild or not _image_exists(debian_base(release)):
            build_debian_base(release)
    # Always built: when nothing changed every step is a cache hit, and a changed Dockerfile
    # is never missed. Only the Debian bases are reused (`rebuild` makes them again).
    for standin in STANDINS:
        _run(["docker", "build", "--quiet", "--file", standin.dockerfile,
              "--build-arg", f"DEBIAN_IMAGE={debian_base(standin.debian)}",
              "--tag", standin.name, "."], cwd=REPO_ROOT)  # fmt: skip
    settings = {standin.setting: standin.name for standin in STANDINS}
    update_env_file(env_file, settings)
    return settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m host_stack.docker_images", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--rebuild", action="store_true", help="bootstrap the Debian bases again")
    parser.add_argument("--env-file", type=Path, default=REPO_ROOT / ".env")
    args = parser.parse_args(argv)
    try:
        settings = build(args.env_file, rebuild=args.rebuild)
    except (FileNotFoundError, subprocess.CalledProcessError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for key, value in settings.items():
        print(f"{key}={value}  (recorded in {args.env_file})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
