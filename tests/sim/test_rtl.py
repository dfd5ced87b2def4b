"""The Verilator model against the functional simulator; the harness's checks, cache and outputs.

Every test that needs a model is slow: each config is built once (about 10 s for `small`, then
cached under build/rtl) and shared by the tests of this module.
"""

from __future__ import annotations

import dataclasses
import json
import time

import numpy as np
import pytest

import sim.rtl as rtl
from boards.dram import PRESETS, DramModel, dram_model
from isa import load_config
from isa.errors import ConfigError, DeadlockError, SimError, ToolError
from isa.formats import MemType, Opcode
from isa.instructions import FINISH, Insn
from isa.program import Program, Segment
from loom.demo import sample_program
from loom.samples import matmul_program
from sim.functional import FunctionalSim
from sim.rtl import RtlSim, build_library

SMALL = load_config("small")
# The small core on a 128-bit bus: WGT and ACC elements are one beat, INP and OUT a quarter.
WIDE = dataclasses.replace(SMALL, axi_data_bits=128)


@pytest.fixture(scope="module")
def small_sim():
    sim = RtlSim(SMALL, "zynq7020", idle_limit=5_000)
    yield sim
    sim.close()


def demo_program(seed=0):
    """The bundled sample with seeded A, W and bias."""
    program, dram, _ = sample_program(seed)
    return program, dram


def run_both(sim: RtlSim, program: Program, dram: np.ndarray):
    """(RTL DRAM, RTL stats, functional DRAM, functional stats) of one program and image."""
    golden = dram.copy()
    expected = FunctionalSim(program.config).run(program, golden)
    got = dram.copy()
    stats = sim.run(program, got)
    return got, stats, golden, expected


# -- DRAM presets (no model needed) ---------------------------------------------------------


def test_presets_are_valid_and_named():
    assert set(PRESETS) >= {"ideal", "zynq7020", "ultra96"}
    assert dram_model("zynq7020") is PRESETS["zynq7020"]
    assert dram_model(PRESETS["ideal"]) is PRESETS["ideal"]
    assert json.dumps(PRESETS["ultra96"].to_dict())


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"read_latency": 0}, "read_latency"),
        ({"bytes_per_cycle": 0.0}, "bytes_per_cycle"),
        ({"max_outstanding": 0}, "max_outstanding"),
    ],
)
def test_dram_model_rejects_bad_fields(fields, message):
    base = {"name": "x", "read_latency": 1, "write_latency": 1, "bytes_per_cycle": None,
            "max_outstanding": None}
    with pytest.raises(ConfigError, match=message):
        DramModel(**(base | fields))


def test_unknown_preset_lists_presets():
    with pytest.raises(ConfigError, match="zynq7020"):
        dram_model("ddr9")


def test_missing_compiler_is_one_tool_error(monkeypatch):
    monkeypatch.setenv("CXX", "no-such-compiler-xyz")
    with pytest.raises(ToolError, match="g\\+\\+"):
        rtl._tools()


# -- against the functional simulator -------------------------------------------------------


@pytest.mark.slow
def test_demo_program_matches_functional_sim(small_sim):
    program, dram = demo_program()
    got, stats, golden, expected = run_both(small_sim, program, dram)
    np.testing.assert_array_equal(got, golden)
    assert stats.gemm_uops == expected.gemm_uops
    assert stats.alu_uops == expected.alu_uops
    assert 0 < stats.busy["compute"] <= stats.cycles
    assert stats.dram_bytes_written == expected.bytes_stored["out"]
    assert stats.dram == "zynq7020"
    assert json.dumps(stats.to_dict())


@pytest.mark.slow
# (32, 32, 32) and (64, 64, 64) overflow the 16-entry compute queue: fetch once stopped taking
# DRAM beats then and blocked the uop loads compute needed (a deadlock, fixed in hw/fetch.py).
@pytest.mark.parametrize("mkn", [(8, 16, 8), (16, 16, 16), (8, 8, 64), (32, 32, 32), (64, 64, 64)])
def test_matmul_matches_functional_sim(small_sim, mkn):
    sample = matmul_program(SMALL, *mkn, bias=True, relu=True, shift=1, seed=5)
    got, stats, golden, expected = run_both(small_sim, sample.program, sample.dram())
    np.testing.assert_array_equal(got, golden)
    np.testing.assert_array_equal(sample.output(got), sample.expected())
    assert (stats.gemm_uops, stats.alu_uops) == (expected.gemm_uops, expected.alu_uops)


@pytest.mark.slow
def test_wide_bus_matches_functional_sim():
    sim = RtlSim(WIDE, "ultra96")
    sample = matmul_program(WIDE, 8, 16, 8, seed=2)
    got, stats, golden, expected = run_both(sim, sample.program, sample.dram())
    np.testing.assert_array_equal(got, golden)
    assert stats.gemm_uops == expected.gemm_uops


@pytest.mark.slow
def test_dram_latency_changes_cycles_not_results():
    sample = matmul_program(SMALL, 16, 16, 16, seed=1)
    cycles = {}
    for preset in ("ideal", "zynq7020", "ulx3s_sdram"):
        got, stats, golden, _ = run_both(RtlSim(SMALL, preset), sample.program, sample.dram())
        np.testing.assert_array_equal(got, golden)
        cycles[preset] = stats.cycles
    assert cycles["ideal"] < cycles["zynq7020"] < cycles["ulx3s_sdram"]


@pytest.mark.slow
def test_bandwidth_limit_slows_transfers():
    # A 1-row load of 64 INP elements: mostly streaming, so halving the rate shows.
    sample = matmul_program(SMALL, 8, 64, 8, seed=1)
    fast = DramModel("fast", 1, 1, None, None)
    slow = dataclasses.replace(fast, name="slow", bytes_per_cycle=2.0)
    results = [RtlSim(SMALL, model).run(sample.program, sample.dram()) for model in (fast, slow)]
    assert results[0].cycles < results[1].cycles
    assert results[0].dram_bytes_read == results[1].dram_bytes_read


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_config_mismatch_names_both_configs(small_sim):
    sample = matmul_program(WIDE, 8, 16, 8, seed=0)
    with pytest.raises(SimError, match=f"{WIDE.name}.*{SMALL.name}"):
        small_sim.run(sample.program)


@pytest.mark.slow
def test_deadlock_names_the_waiting_unit_then_the_model_recovers(small_sim):
    # Compute pops a load->compute token that no instruction pushes.
    stuck = Program(SMALL, [Insn(Opcode.LOAD, mem_type=MemType.UOP, pop_prev=1), FINISH])
    started = time.perf_counter()
    with pytest.raises(DeadlockError, match=r"no DRAM traffic.*waiting for a token or room: "
                                            r"compute.*COMPUTE_STALL="):
        small_sim.run(stuck)
    assert time.perf_counter() - started < 10
    program, dram = demo_program(seed=3)
    got, _, golden, _ = run_both(small_sim, program, dram)
    np.testing.assert_array_equal(got, golden)


@pytest.mark.slow
@pytest.mark.parametrize("op", [Opcode.LOAD, Opcode.STORE])
def test_out_of_range_access_names_the_address(small_sim, op):
    mem = MemType.INP if op == Opcode.LOAD else MemType.OUT
    base = 1 << 20  # elements of 4 bytes: byte address 0x400000
    far = Insn(op, mem_type=mem, dram_base=base, y_size=1, x_size=1, x_stride=1)
    program = Program(SMALL, [far, FINISH], [Segment("pad", "scratch", "inp", 4)])
    with pytest.raises(SimError, match="out of range at 0x400000"):
        small_sim.run(program)


@pytest.mark.slow
def test_short_image_is_refused(small_sim):
    program, dram = demo_program()
    with pytest.raises(SimError, match="needs at least"):
        small_sim.run(program, dram[:-16].copy())


# -- build cache, waveforms, trace ----------------------------------------------------------


@pytest.mark.slow
def test_second_build_is_a_cache_hit(small_sim, monkeypatch):
    def no_build(*args, **kwargs):
        raise AssertionError("build_library rebuilt a cached model")

    monkeypatch.setattr(rtl, "_compile", no_build)
    started = time.perf_counter()
    assert build_library(SMALL) == small_sim.library
    assert time.perf_counter() - started < 2


@pytest.mark.slow
def test_waves_and_trace_are_written(tmp_path):
    sim = RtlSim(SMALL, "ideal", waves="vcd")
    sample = matmul_program(SMALL, 16, 16, 16, seed=1)
    waves, trace = tmp_path / "run.vcd", tmp_path / "run.json"
    dram = sample.dram()
    stats = sim.run(sample.program, dram, waves=waves, trace=trace, trace_interval=64)
    np.testing.assert_array_equal(sample.output(dram), sample.expected())
    assert "$var" in waves.read_text()[:100_000]
    events = json.loads(trace.read_text())["traceEvents"]
    tid = next(e["tid"] for e in events if e["name"] == "thread_name"
               and e["args"]["name"] == "compute")
    compute = [e for e in events if e["ph"] == "X" and e["tid"] == tid]
    assert compute and sum(e["args"]["busy_cycles"] for e in compute) == stats.busy["compute"]
    assert any(e["ph"] == "C" for e in events)
    with pytest.raises(SimError, match="VCD"):
        sim.run(sample.program, waves=tmp_path / "run.fst")
