"""Precompiled bytecode for the Python that every Spark process loads from pyspark's zips.

spark-submit, and the JVM whenever it starts a Python process (the driver under spark-submit,
each executor's Python workers, every step of a Python data source), puts
`<pyspark>/python/lib/pyspark.zip` and py4j's zip first on PYTHONPATH. The wheel's zips hold
only sources, and zipimport never writes bytecode, so each of those processes compiled the ~200
pyspark modules it imports again: 0.6 s of `import pyspark.sql` alone, every time.

`python -m host_stack.bytecode` rewrites the two zips of the running interpreter's pyspark with
an unchecked-hash .pyc beside each .py (sources kept, for tracebacks). noxfile.py runs it once
when it builds the pipeline virtualenv, right after installing the lock with compiled bytecode
(uv does not compile by default, and where PYTHONDONTWRITEBYTECODE is set, as on this project's
CI machines, nothing would ever be cached); the Dockerfile runs this file after its pip install
(pip compiles the rest), so the compose stack's Spark processes get the same.

Unchecked is right for a zip that is never edited: a pyspark upgrade brings new zips, and a .pyc
of another Python version is skipped by its magic number, so the worst case is the old behaviour.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import warnings
import zipfile
from importlib._bootstrap_external import _code_to_hash_pyc  # what py_compile itself uses
from pathlib import Path


def spark_python_zips() -> list[Path]:
    """The zips the JVM puts on every Spark Python process's path (pyspark's and py4j's)."""
    import pyspark  # not host_stack.spark: the Dockerfile runs this file on its own

    return sorted((Path(pyspark.__file__).resolve().parent / "python" / "lib").glob("*.zip"))


def is_precompiled(zip_path: Path) -> bool:
    with zipfile.ZipFile(zip_path) as archive:
        names = set(archive.namelist())
    return all(name + "c" in names for name in names if name.endswith(".py"))


def precompile_zip(zip_path: Path) -> int:
    """Add a .pyc for each .py of the zip; returns how many were added.

    The zip is replaced by rename, never written in place: package installers hard-link
    installed files to their cache, which must stay as it was.
    """
    partial = zip_path.with_name(zip_path.name + ".partial")
    added = 0
    try:
        with (
            zipfile.ZipFile(zip_path) as source,
            zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as target,
        ):
            names = set(source.namelist())
            for info in source.infolist():
                data = source.read(info)
                target.writestr(info, data)
                if not info.filename.endswith(".py") or info.filename + "c" in names:
                    continue
                with warnings.catch_warnings():
                    # pyspark's own tests hold a few `is` comparisons with literals.
                    warnings.simplefilter("ignore", SyntaxWarning)
                    code = compile(data, info.filename, "exec", dont_inherit=True)
                pyc = _code_to_hash_pyc(code, importlib.util.source_hash(data), checked=False)
                target.writestr(
                    zipfile.ZipInfo(info.filename + "c", info.date_time),
                    bytes(pyc),
                    compress_type=zipfile.ZIP_DEFLATED,
                )
                added += 1
        os.replace(partial, zip_path)
    finally:
        partial.unlink(missing_ok=True)
    return added


def main() -> int:
    for zip_path in spark_python_zips():
        if is_precompiled(zip_path):
            print(f"{zip_path.name}: already precompiled")
            continue
        print(f"{zip_path.name}: {precompile_zip(zip_path)} modules precompiled")
    return 0


if __name__ == "__main__":
    sys.exit(main())
