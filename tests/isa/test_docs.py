"""docs/isa.md's bit-layout tables must match the field tables of the `default` config."""

import re
from pathlib import Path

from isa import load_config

DOC = Path(__file__).parents[2] / "docs" / "isa.md"


def _doc_tables() -> dict[str, list[tuple[int, int, str]]]:
    tables, current = {}, None
    for line in DOC.read_text().splitlines():
        heading = re.match(r"#### (\w+)", line)
        if heading:
            current = tables.setdefault(heading.group(1), [])
            continue
        row = re.match(r"\| \[(\d+)(?::(\d+))?\] \| (\d+) \| (\w+)", line)
        if row and current is not None:
            msb, lsb = int(row.group(1)), int(row.group(2) or row.group(1))
            current.append((msb, lsb, row.group(4)))
    return tables


def test_bit_tables_match_the_default_config():
    described = load_config("default").describe()["formats"]
    tables = _doc_tables()
    assert set(tables) == {"LOAD", "GEMM", "ALU", "FINISH", "UOP"}
    for name, rows in tables.items():
        expected = [(r["msb"], r["lsb"], r["name"]) for r in described[name]]
        assert rows == expected, name
