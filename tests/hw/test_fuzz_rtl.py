"""Random-program differential testing of the accelerator's RTL against the functional simulator.

The Amaranth model runs here; the Verilator model (sim.rtl) runs the same programs much faster,
so it gets more of them. Then the runner itself: it must catch and describe a wrong backend.
"""

from __future__ import annotations

import dataclasses
import sys

import pytest

from isa import load_config
from isa.asm import assemble
from isa.config import HwConfig
from isa.errors import SimError, ToolError
from loom.cli import main
from sim.amaranth_backend import AmaranthSim
from sim.functional import FunctionalSim
from sim.fuzz import first_difference, fuzz
from sim.progen import random_program

SMALL = load_config("small")
# The small core on a 128-bit bus, as tests/sim/test_rtl.py builds it: INP and OUT elements
# are a quarter of a beat.
WIDE = dataclasses.replace(SMALL, axi_data_bits=128)
# 1x8x8 on a 32-bit bus (ACC elements are 8 beats) with the shallowest queues the config allows.
TINY = HwConfig(batch=1, block_in=8, block_out=8, uop_depth=64, inp_depth=32, wgt_depth=16,
                acc_depth=32, axi_data_bits=32, insn_queue_depth=2, dep_queue_depth=2)


def assert_matches(cfg, backend, **kwargs):
    report = fuzz(cfg, backend, progress=False, **kwargs)
    assert report.ok, str(report)


def assert_matches_program(program, backend):
    expected, got = program.dram_image(), program.dram_image()
    FunctionalSim(program.config).run(program, expected)
    backend(program, got)
    assert first_difference(program, expected, got) == ""


@pytest.mark.slow
def test_small_matches_on_amaranth():
    with AmaranthSim(SMALL, stall=0.2) as accelerator:
        assert_matches(SMALL, accelerator.run, programs=100, seed=1_000)


@pytest.mark.slow
def test_tiny_with_shallow_queues_matches_on_amaranth():
    with AmaranthSim(TINY, stall=0.3, read_latency=7) as accelerator:
        assert_matches(TINY, accelerator.run, programs=12, seed=2_000)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "size", "programs"), [
    ("small", "small", 1_000), ("small", "medium", 200), ("wide", "small", 300),
])
def test_matches_on_verilator(name, size, programs):
    from sim.rtl import RtlSim

    cfg = WIDE if name == "wide" else load_config(name)
    rtl = RtlSim(cfg, "ultra96", idle_limit=20_000)
    try:
        assert_matches(cfg, rtl.run, programs=programs, seed=3_000, size=size)
    finally:
        rtl.close()


def test_a_compute_load_behind_a_full_fetch_queue_completes():
    """Regression, found by this fuzzer: the accelerator hung on this program.

    Fetch read the instruction stream as one long DRAM read and held the read channel while
    the compute queue was full; the LOAD UOP at the head of that queue waited for its data
    behind fetch's forever. Fixed by fetch prefetching into a buffer.
    """
    text = "\n".join([".config small", ".kernel k", "uop 0 0 0", ".end",
                      "load uop sram=0 kernel=k", *["nop compute"] * 16, "finish"])
    program = assemble(text)
    with AmaranthSim(SMALL, max_cycles=3_000) as accelerator:
        assert_matches_program(program, accelerator.run)


# -- the runner --------------------------------------------------------------------------------


def flip_output_byte(program, dram):
    """A broken backend: right, except for one bit of byte 5 of the output segment."""
    FunctionalSim(program.config).run(program, dram)
    dram[program.segment("C").offset + 5] ^= 0x10


def test_a_wrong_byte_is_reported_with_segment_element_lane_and_seed():
    report = fuzz(SMALL, flip_output_byte, programs=5, seed=7, progress=False)
    assert not report.ok and report.matched == 0
    mismatch = report.mismatch
    assert (mismatch.index, mismatch.seed) == (0, 7)
    program, dram = random_program(SMALL, 7)
    FunctionalSim(SMALL).run(program, dram)
    want = int(program.read(dram, "C")[1, 0, 1])  # 4-byte OUT elements: byte 5 is lane 1 of 1
    got = want ^ 0x10 if want ^ 0x10 < 128 else (want ^ 0x10) - 256
    assert f"segment C (output out) element 1, lane (0, 1): expected {want}, got {got}" in \
        mismatch.detail
    text = str(report)
    assert "seed 7" in text and ".config small" in text and "finish" in text
    assert "loom fuzz --config small --seed 7 --programs 1 --size small" in text


def test_backend_errors_are_mismatches_and_tool_errors_propagate():
    def fails(program, dram):
        raise SimError("no such luck")

    report = fuzz(SMALL, fails, programs=3, seed=0, progress=False)
    assert "the backend failed: SimError: no such luck" in report.mismatch.detail

    def missing(program, dram):
        raise ToolError("verilator is not installed")

    with pytest.raises(ToolError):
        fuzz(SMALL, missing, programs=3, seed=0, progress=False)


def test_differences_outside_segments_are_located():
    program, dram = random_program(SMALL, 1)
    changed = dram.copy()
    changed[program.insn_offset + 16 * 2 + 3] ^= 1
    assert f"byte {program.insn_offset + 35} in instruction #2" in \
        first_difference(program, dram, changed)
    gap = program.segment("A").offset - 1  # alignment padding before a segment
    changed = dram.copy()
    changed[gap] = 9
    assert first_difference(program, dram, changed).endswith(
        f"byte {gap} outside every segment: expected 0, got 9")


def test_cli_fuzz(capsys, monkeypatch):
    assert main(["fuzz", "--config", "small", "--programs", "2", "--seed", "5"]) == 0
    assert "2 small programs from seed 5" in capsys.readouterr().out

    monkeypatch.setattr(AmaranthSim, "run", lambda self, program, dram: flip_output_byte(
        program, dram))
    assert main(["fuzz", "--programs", "2", "--seed", "5"]) == 1
    assert "segment C (output out) element 1" in capsys.readouterr().out

    monkeypatch.setitem(sys.modules, "sim.rtl", None)  # as if sim.rtl could not be imported
    assert main(["fuzz", "--programs", "2", "--backend", "rtl"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("loom: error: the rtl backend is not available")


def test_fuzz_reports_what_matched():
    report = fuzz(SMALL, FunctionalSim(SMALL).run, programs=20, seed=0, progress=False)
    assert report.ok and report.matched == 20 and report.instructions > 20 * 10
    assert str(report).startswith("20 small programs from seed 0")
