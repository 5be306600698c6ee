"""The deploy of orchestration/deploy.py rehearsed on a LocalStack started for it, and stopped.

    python -m host_stack.deploy_rehearsal [--stack-name NAME]
    nox -s deploy -- --target localstack      (the same)

It lives here, not in orchestration/: the deploy knows AWS and config only, and the stack (which
knows how to run LocalStack) depends on it, never the other way round.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator, Mapping

from config.config import ConfigError, load_settings
from host_stack.localstack import LocalStack, find_localstack_python, free_port
from host_stack.stack_settings import REPO_ROOT
from orchestration.deploy import DEFAULT_STACK_NAME, DeployError, deploy


@contextlib.contextmanager
def localstack_environment(environ: Mapping[str, str]) -> Iterator[dict[str, str]]:
    """A LocalStack started for the rehearsal, and `environ` pointed at it (PIPELINE_ENV=aws)."""
    python = find_localstack_python()
    if python is None:
        raise DeployError(
            "LOCALSTACK_PYTHON is not set: run `nox -s deploy -- --target localstack`, which "
            "installs LocalStack in its own venv and sets it"
        )
    state_dir = REPO_ROOT / ".stack" / "deploy-localstack"
    with LocalStack(python, port=free_port(), state_dir=state_dir) as stack:
        yield {
            **environ,
            "PIPELINE_ENV": "aws",
            "AWS_ENDPOINT_URL": stack.endpoint_url,
            # LocalStack's documented dummy credentials.
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",  # pragma: allowlist secret
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack-name", default=DEFAULT_STACK_NAME)
    args = parser.parse_args(argv)
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        with localstack_environment(os.environ) as environ:
            settings = load_settings("aws", environ)
            # An emulator started for this run: nothing to protect, apply straight away.
            deploy(settings, confirm=True, stack_name=args.stack_name)
            print("rehearsal done; the LocalStack it ran on stops now")
    except (DeployError, ConfigError) as exc:
        print(f"deploy failed: {exc}", file=sys.stderr)
        return 1
    except (ClientError, BotoCoreError) as exc:
        print(f"deploy failed: LocalStack refused a call: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
