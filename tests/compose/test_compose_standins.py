"""The stand-in images (host_stack/docker_images.py) and the settings that name them.

Each third-party image of the compose files is a setting whose default is the official image;
each stand-in replaces exactly one of them, is built from a Dockerfile in envs/local/images/,
and honours what the compose files use of the official image. Building them needs an engine
and is done by `nox -s docker_images` (CI runs it before the Docker-mode e2e runs).
"""

from __future__ import annotations

import re

from host_stack.docker_images import CA_DIR, STANDINS, update_env_file
from tests.compose.conftest import BASE, MERGED, REPO_ROOT, render

REHEARSAL = ("docker-compose.yml", "envs/aws/docker-compose.rehearsal.yml")


def official_defaults() -> dict[str, str]:
    """SETTING -> default image, from every ${SETTING:-image} in the compose files and the
    Dockerfile's ARGs; the project's own image (AIRFLOW_IMAGE, builditall-*) is not one."""
    defaults = {}
    for path in ("docker-compose.yml", "docker-compose.local.yml", *REHEARSAL[1:]):
        for setting, image in re.findall(
            r"\$\{([A-Z_]+_IMAGE):-([^}]+)\}", (REPO_ROOT / path).read_text()
        ):
            if image.startswith("builditall-"):
                continue
            assert defaults.setdefault(setting, image) == image, f"{setting} has two defaults"
    for setting, image in re.findall(
        r"^ARG ([A-Z_]+_IMAGE)=(\S+)", (REPO_ROOT / "Dockerfile").read_text(), re.M
    ):
        assert defaults.setdefault(setting, image) == image, f"{setting} has two defaults"
    return defaults


def test_every_third_party_image_is_a_setting_with_a_stand_in():
    defaults = official_defaults()
    assert {standin.setting: standin.official for standin in STANDINS} == defaults
    for files in (BASE, MERGED, REHEARSAL):
        for name, service in render(files)["services"].items():
            if "build" not in service and not service["image"].startswith("builditall-"):
                assert service["image"] in defaults.values(), f"{name}: {service['image']}"


def test_the_settings_replace_the_official_images():
    moved = {standin.setting: standin.name for standin in STANDINS}
    for files in (MERGED, REHEARSAL):
        services = render(files, moved)["services"]
        images = {service["image"] for service in services.values()}
        assert not images & set(official_defaults().values()), files
        for service in services.values():
            if "build" in service:
                assert service["build"]["args"]["PYTHON_IMAGE"] == moved["PYTHON_IMAGE"]


def test_each_stand_in_has_its_dockerfile_and_honours_what_compose_uses():
    for standin in STANDINS:
        dockerfile = (REPO_ROOT / standin.dockerfile).read_text()
        assert f"ARG DEBIAN_IMAGE=builditall/debian:{standin.debian}" in dockerfile, standin
        assert standin.official.split(":")[0] in dockerfile, f"{standin.dockerfile} names no image"
    postgres = render(BASE)["services"]["postgres"]
    entrypoint = (REPO_ROOT / "envs/local/images/postgres-entrypoint.sh").read_text()
    for key in postgres["environment"]:
        assert key in entrypoint, f"the Postgres stand-in ignores {key}"
    assert postgres["volumes"][0]["target"] == "/var/lib/postgresql/data"
    assert (
        "PGDATA=/var/lib/postgresql/data"
        in (REPO_ROOT / "envs/local/images/postgres.Dockerfile").read_text()
    )
    assert postgres["healthcheck"]["test"][1] == "pg_isready"
    assert render(BASE)["services"]["redis"]["healthcheck"]["test"][1] == "redis-cli"
    # LocalStack at the version host mode runs, with curl for the healthcheck.
    localstack = (REPO_ROOT / "envs/local/images/localstack.Dockerfile").read_text()
    assert "envs/local/localstack-requirements.txt" in localstack
    assert "curl" in localstack
    lock = (REPO_ROOT / "envs/local/localstack-requirements.txt").read_text()
    version = next(s.name.rsplit(":", 1)[1] for s in STANDINS if s.setting == "LOCALSTACK_IMAGE")
    assert f"localstack-core=={version}" in lock


def test_every_build_takes_the_extra_ca_certificates_and_pip_verifies_against_them():
    dockerfiles = [REPO_ROOT / "Dockerfile", REPO_ROOT / "envs/local/images/localstack.Dockerfile"]
    for path in dockerfiles:
        text = path.read_text()
        assert "COPY envs/local/ca-certificates/ /usr/local/share/ca-certificates/" in text, path
        assert "update-ca-certificates" in text, path
        for install in re.findall(r"RUN[^\n]*pip install", text, re.S):
            assert "PIP_CERT=/etc/ssl/certs/ca-certificates.crt" in install, path
        assert "trusted-host" not in text, path
        assert "--no-check-certificate" not in text, path
    assert "envs/local/ca-certificates/*.crt" in (REPO_ROOT / ".gitignore").read_text()
    assert (CA_DIR / "README.md").is_file()


def test_recording_the_settings_keeps_the_rest_of_the_env_file(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# secrets\nPOSTGRES_PASSWORD=kept\nREDIS_IMAGE=old\n"
    )  # pragma: allowlist secret
    update_env_file(env_file, {"REDIS_IMAGE": "builditall/redis:7.0-bookworm", "PYTHON_IMAGE": "p"})
    assert env_file.read_text().splitlines() == [
        "# secrets",
        "POSTGRES_PASSWORD=kept",  # pragma: allowlist secret
        "REDIS_IMAGE=builditall/redis:7.0-bookworm",
        "PYTHON_IMAGE=p",
    ]
    assert env_file.stat().st_mode & 0o777 == 0o600


def test_a_missing_ca_bundle_names_the_setting_and_the_expected_form(tmp_path):
    import pytest

    from host_stack.docker_images import copy_ca_certificates

    missing = str(tmp_path / "nowhere.pem")
    with pytest.raises(FileNotFoundError, match=r"BUILD_CA_CERTIFICATES=.*expected a PEM bundle"):
        copy_ca_certificates({"BUILD_CA_CERTIFICATES": missing}, {})
    assert copy_ca_certificates({}, {}) is None
