"""Generated Verilog passes `verilator --lint-only -Wall` (with the justified waivers)."""

import pytest

from hw.top import TOP_NAME
from hw.verilator import lint
from hw.verilog import generate, write
from isa import load_config


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["small", "default", "int4", "nonsquare"])
def test_verilog_lints_clean(preset, tmp_path):
    summary = write(load_config(preset), tmp_path)
    assert lint(tmp_path / f"{TOP_NAME}.v", TOP_NAME) == ""
    assert summary["lines"] > 1000


def test_generation_is_reproducible():
    cfg = load_config("small")
    first = generate(cfg)
    assert first == generate(cfg)
    assert "/work/" not in first  # no source paths
