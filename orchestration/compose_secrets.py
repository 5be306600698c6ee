"""Write the secrets of the Docker Compose stack into .env (untracked), keeping any already there.

    python3 -m orchestration.compose_secrets            # adds what .env lacks, prints the keys
    python3 -m orchestration.compose_secrets --env-file /path/to/.env

docker-compose.yml reads each of SECRET_KEYS as `${KEY:?...}` from the environment or from .env
next to it, and stops with a message pointing here when one is missing. Nothing committed holds
a value (.env.example lists the keys, empty). In production set them in the environment of
`docker compose` (e.g. from SSM Parameter Store) or run this once on the instance.

Standard library only, so it runs with any python3 on a fresh EC2 instance or laptop.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ENV_FILE = REPO_ROOT / ".env"


def fernet_key() -> str:
    """A Fernet key as Airflow expects it: 32 random bytes, url-safe base64."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def _token() -> str:
    # url-safe characters only: the database password is also part of a connection URL.
    return secrets.token_urlsafe(32)


def jwt_secret() -> str:
    """Airflow signs its tokens with HS512, which wants at least 64 bytes (RFC 7518 3.2)."""
    return secrets.token_urlsafe(64)


# KEY -> how a fresh value is made. tests/compose checks these are exactly the ${KEY:?} of the
# compose files.
SECRET_KEYS: dict[str, Callable[[], str]] = {
    "AIRFLOW_FERNET_KEY": fernet_key,
    "AIRFLOW_JWT_SECRET": jwt_secret,
    "AIRFLOW_API_SECRET_KEY": _token,
    "AIRFLOW_ADMIN_PASSWORD": _token,
    "POSTGRES_PASSWORD": _token,
}

_LINE_RE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines of a .env file (as Compose reads them: # comments, optional quotes)."""
    values: dict[str, str] = {}
    if not path.exists():
        return values
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("#"):
            continue
        match = _LINE_RE.match(line)
        if match:
            value = match.group(2)
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            values[match.group(1)] = value
    return values


def ensure_secrets(path: Path = DEFAULT_ENV_FILE) -> list[str]:
    """Add a fresh value for every secret key the file lacks (or has empty); return those keys.

    Existing values are never changed: rotating the Fernet key would make stored connections
    unreadable, and a new database password would not match the initialised database.
    """
    existing = read_env_file(path)
    missing = [key for key in SECRET_KEYS if not existing.get(key)]
    if not missing:
        return []
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    # An empty KEY= line (as copied from .env.example) is replaced, not duplicated.
    lines = [line for line in lines if (m := _LINE_RE.match(line)) is None or m[1] not in missing]
    lines += [f"{key}={SECRET_KEYS[key]()}" for key in missing]
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m orchestration.compose_secrets", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--env-file", type=Path, default=DEFAULT_ENV_FILE)
    args = parser.parse_args(argv)
    added = ensure_secrets(args.env_file)
    if added:
        print(f"wrote {', '.join(added)} to {args.env_file} (mode 600, untracked)")
    else:
        print(f"{args.env_file} already has every secret ({', '.join(SECRET_KEYS)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
