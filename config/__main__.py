"""`python -m config show | spark-conf | reference`: inspect the settings from a shell.

show        every setting as KEY=value (secret masked), where it came from, the derived URIs
spark-conf  `--conf k=v` lines: spark-submit $(python -m config spark-conf) job.py ...
reference   the configuration reference (key, local, aws, expected) as a Markdown table;
            `reference --update` rewrites it in README.md and docs/configuration.md
PIPELINE_ENV picks the environment for show and spark-conf, as everywhere else.
"""

from __future__ import annotations

import argparse
import sys

from config.config import ConfigError, Settings, load_settings


def _show(settings: Settings) -> list[str]:
    lines = [f"# PIPELINE_ENV={settings.pipeline_env}: {settings.settings_file}"]
    rows = []
    for field, value in settings.model_dump().items():
        key = field.upper()
        # model_dump keeps SecretStr, whose str() is the mask.
        rows.append((f"{key}={'' if value is None else value}", settings.sources.get(key, "")))
    width = max(len(row) for row, _ in rows)
    lines += [f"{row:<{width}}  # {source}" for row, source in rows]
    lines.append("# derived")
    for name in ("raw_uri", "processed_uri", "logs_uri", "emr_job_artifacts_uri"):
        if (value := getattr(settings, name)) is not None:
            lines.append(f"# {name} = {value}")
    return lines


def _spark_conf(settings: Settings) -> list[str]:
    return [f"--conf {key}={value}" for key, value in settings.spark_submit_conf().items()]


def _reference(update: bool) -> int:
    from config.reference import DOCUMENTS, REPO_ROOT, reference_table
    from config.reference import update as update_file

    try:
        table = reference_table()
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 1
    if not update:
        print(table)
        return 0
    for path in DOCUMENTS:
        changed = update_file(path, table)
        print(f"{path.relative_to(REPO_ROOT)}: {'updated' if changed else 'up to date'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m config", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("show", "spark-conf", "reference"))
    parser.add_argument(
        "--update", action="store_true", help="reference: rewrite the tables in the docs"
    )
    args = parser.parse_args(argv)
    if args.command == "reference":
        return _reference(update=args.update)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 1
    for line in _show(settings) if args.command == "show" else _spark_conf(settings):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
