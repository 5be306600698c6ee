"""The configuration tables in the docs are what `python -m config reference` prints."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import reference
from config.config import KEYS

FIX = "run `python -m config reference --update` and commit the result"


@pytest.mark.parametrize("path", reference.DOCUMENTS, ids=lambda p: p.name)
def test_the_committed_table_is_the_generated_one(path: Path) -> None:
    committed = reference.committed_table(path.read_text())

    assert committed is not None, f"{path} has lost its config-reference markers"
    assert committed == reference.reference_table(), f"{path}'s configuration table is stale: {FIX}"


def test_the_table_lists_every_key_with_both_values_and_the_expected_form() -> None:
    rows = reference.reference_table().splitlines()[2:]

    assert [row.split(" | ")[0].strip("|` ") for row in rows] == list(KEYS)
    by_key = {row.split(" | ")[0].strip("|` "): row.split(" | ") for row in rows}
    assert by_key["DATA_BUCKET"][1:3] == ["`builditall-data`", "`builditall-data`"]
    assert by_key["AWS_ENDPOINT_URL"][2] == "(unset)"
    assert by_key["AWS_SECRET_ACCESS_KEY"][1] == "(secret)"
    assert "bucket name" in by_key["DATA_BUCKET"][3]


def test_a_stale_table_is_told_apart_and_update_replaces_only_it(tmp_path: Path) -> None:
    table = reference.reference_table()
    stale = table.replace("`builditall-data`", "`old-bucket`", 1)
    doc = tmp_path / "doc.md"
    doc.write_text(f"# Title\n\nbefore\n\n{reference.block(stale)}\n\nafter\n")

    assert reference.committed_table(doc.read_text()) != table
    assert reference.update(doc, table) is True
    assert reference.committed_table(doc.read_text()) == table
    assert doc.read_text().startswith("# Title\n\nbefore\n\n")
    assert doc.read_text().endswith("\n\nafter\n")
    assert reference.update(doc, table) is False
