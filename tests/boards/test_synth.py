"""Yosys resource estimates of the `small` accelerator on ECP5 and Xilinx 7-series."""

import dataclasses
import json

import pytest

from boards.synth import _run_yosys, abc_fallback_command, synthesize, synthesize_config
from hw.top import TOP_NAME
from hw.verilog import generate
from isa import ToolError, load_config
from loom.cli import main

SMALL = load_config("small")


@pytest.mark.synth
def test_ecp5_estimate_through_the_cli(capsys):
    assert main(["synth", "--config", "small", "--family", "ecp5", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["family"] == "ecp5"
    # the GEMM core alone needs batch*block_in*block_out multipliers
    assert report["dsp"] >= SMALL.macs_per_cycle
    assert report["bram"] >= 1 and report["lut"] > 1000 and report["ff"] > 1000


@pytest.mark.synth
def test_xilinx7_estimate_from_rtlil_matches_the_verilog():
    resources = synthesize_config(SMALL, "xilinx7")
    from_verilog = synthesize(generate(SMALL), TOP_NAME, "xilinx7")
    assert (resources.dsp, resources.bram) == (from_verilog.dsp, from_verilog.bram)
    assert resources.dsp >= SMALL.macs_per_cycle
    assert resources.bram >= 1 and resources.lut > 1000
    assert resources.cells.get("DSP48E1", 0) == resources.dsp


def test_unknown_family_and_bad_verilog_are_tool_errors():
    with pytest.raises(ToolError, match="unknown FPGA family 'ice40'"):
        synthesize("module m(); endmodule", "m", "ice40")
    with pytest.raises(ToolError, match="yosys ecp5 synthesis failed"):
        synthesize("module m(; endmodule", "m", "ecp5")
    with pytest.raises(ToolError, match="unknown design language 'vhdl'"):
        synthesize("entity m is end;", "m", "ecp5", language="vhdl")


@pytest.mark.synth
@pytest.mark.parametrize("family", ["ecp5", "xilinx7"])
def test_lut_multipliers_leave_the_dsps_out(family):
    assert synthesize(MAC, "mac", family).dsp >= 1
    assert synthesize(MAC, "mac", family, use_dsp=False).dsp == 0



@pytest.mark.synth
def test_lut_multipliers_of_the_gemm_core_leave_its_dsps_out():
    """lut_mult_bits=8: the 16 GEMM multipliers of `small` become LUT logic, the ALU keeps its
    DSPs."""
    lut = dataclasses.replace(SMALL, lut_mult_bits=8)
    dsp, with_luts = synthesize_config(SMALL, "ecp5"), synthesize_config(lut, "ecp5")
    assert with_luts.dsp == dsp.dsp - SMALL.macs_per_cycle
    assert with_luts.lut > dsp.lut


MAC = """
module mac (input wire clk, input wire [7:0] a, input wire [7:0] b, output reg [17:0] acc);
  always @(posedge clk) acc <= acc + a * b;
endmodule
"""


@pytest.mark.synth
def test_the_abc_fallback_script_synthesizes(tmp_path):
    """The ECP5 script with ABC in place of ABC9 (used when ABC9 fails) maps a design to LUT4s
    and DSPs; families without a fallback have none."""
    (tmp_path / "mac.v").write_text(MAC)
    assert _run_yosys(str(tmp_path), f"read_verilog mac.v; {abc_fallback_command('ecp5', 'mac')}") \
        is None
    cells = json.loads((tmp_path / "stat.json").read_text())["design"]["num_cells_by_type"]
    assert cells.get("MULT18X18D") == 1 and cells.get("LUT4", 0) + cells.get("CCU2C", 0) > 0
    assert abc_fallback_command("xilinx7", "mac") is None


def test_a_yosys_error_names_the_pass(tmp_path):
    """The log's ERROR line and the pass that raised it, which yosys -q does not print."""
    error = _run_yosys(str(tmp_path), "read_verilog -sv nonexistent.v")
    assert error and "nonexistent.v" in error
