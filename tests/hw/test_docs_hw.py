"""docs/hardware.md's register table must list every register of hw.regmap at its offset."""

import re
from pathlib import Path

from hw.regmap import REGISTERS

DOC = Path(__file__).parents[2] / "docs" / "hardware.md"


def test_register_table_matches_the_map():
    rows = re.findall(r"^\| 0x([0-9A-F]{2}) \| (\w+) \|", DOC.read_text(), flags=re.M)
    assert [(int(o, 16), n) for o, n in rows] == [(r.offset, r.name) for r in REGISTERS]
