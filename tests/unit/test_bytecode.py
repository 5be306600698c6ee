"""Precompiled bytecode in the zips every Spark Python process imports (host_stack/bytecode.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from host_stack.bytecode import is_precompiled, precompile_zip, spark_python_zips

PROBE = """
import json, traceback, zipmod
try:
    zipmod.fail()
except ValueError:
    tb = traceback.format_exc()
print(json.dumps({"file": zipmod.__file__, "value": zipmod.VALUE, "traceback": tb}))
"""


def _source_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        source = "VALUE = 41 + 1\n\ndef fail():\n    raise ValueError('boom')\n"
        archive.writestr("zipmod/__init__.py", source)
        archive.writestr("zipmod/data.txt", "not Python")
    return path


def _import_from(zip_path: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(zip_path), "PYTHONDONTWRITEBYTECODE": "1"}
    probe = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60,
        check=True,
    )  # fmt: skip
    return json.loads(probe.stdout)


def test_a_precompiled_zip_is_imported_from_its_bytecode_with_the_sources_kept(tmp_path):
    zip_path = _source_zip(tmp_path / "lib.zip")
    assert not is_precompiled(zip_path)
    assert _import_from(zip_path)["file"].endswith("zipmod/__init__.py")  # compiled at each import

    assert precompile_zip(zip_path) == 1

    assert is_precompiled(zip_path)
    with zipfile.ZipFile(zip_path) as archive:
        assert sorted(archive.namelist()) == [
            "zipmod/__init__.py", "zipmod/__init__.pyc", "zipmod/data.txt",
        ]  # fmt: skip
        assert archive.read("zipmod/data.txt") == b"not Python"
    imported = _import_from(zip_path)
    assert imported["file"].endswith("zipmod/__init__.pyc")
    assert imported["value"] == 42
    # Tracebacks still show the source line, read from the .py kept in the zip.
    assert "raise ValueError('boom')" in imported["traceback"]


def test_precompiling_replaces_the_zip_and_leaves_a_hard_linked_original_alone(tmp_path):
    # uv hard-links installed files to its cache: writing into the zip would change the cache.
    cached = _source_zip(tmp_path / "cache.zip")
    installed = tmp_path / "installed.zip"
    os.link(cached, installed)
    before = cached.read_bytes()

    precompile_zip(installed)

    assert cached.read_bytes() == before
    assert is_precompiled(installed)
    assert not is_precompiled(cached)
    assert not list(tmp_path.glob("*.partial"))


def test_the_pipeline_virtualenv_ships_spark_with_precompiled_zips():
    # noxfile.py runs `python -m host_stack.bytecode` when it builds the virtualenv.
    zips = {path.name: path for path in spark_python_zips()}
    assert "pyspark.zip" in zips
    assert all(is_precompiled(path) for path in zips.values()), zips
