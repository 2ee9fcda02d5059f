"""`microq ops` lists every op the importer converts, and the README table is its output."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from microq.cli import main
from microq.onnx_import import ops_table
from microq.onnx_import.convert import CONVERTERS

README = Path(__file__).resolve().parents[1] / "README.md"


def test_microq_ops_lists_every_converter():
    r = CliRunner().invoke(main, ["ops", "--json"])
    assert r.exit_code == 0, r.output
    listed = {row["op"] for row in json.loads(r.output)}
    assert listed == set(CONVERTERS)
    text = CliRunner().invoke(main, ["ops"])
    assert text.exit_code == 0
    for op in CONVERTERS:
        assert any(line.split()[0] == op for line in text.output.splitlines()), op


def test_readme_table_rows_come_from_ops_table():
    """Each documented row of `microq ops --markdown` is in the README verbatim (regenerate the
    README table with `microq ops --markdown` after editing ops_table.ROWS)."""
    readme = README.read_text()
    documented = {op for ops, _, _ in ops_table.ROWS for op in ops}
    for line in ops_table.markdown().splitlines()[2:]:
        ops = {o.strip() for o in line.split("|")[1].split(",")}
        if ops <= documented:
            assert line in readme, f"README lacks the row: {line}"
