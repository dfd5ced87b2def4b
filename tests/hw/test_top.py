"""The whole accelerator in Amaranth's simulator, against an AXI DRAM model and an AXI-Lite host.

Each test runs a Program the way a host driver would (bases, instruction address and count,
START, poll DONE) and compares the whole DRAM image with the functional simulator's.
"""

import numpy as np
import pytest

from isa import load_config
from loom.demo import sample_program
from loom.samples import matmul_program
from sim.amaranth_backend import AmaranthSim
from sim.functional import FunctionalSim

SMALL = load_config("small")


def run_accelerator(program, dram: np.ndarray, *, seed=0, stall=0.0, read_latency=4,
                    max_cycles=40_000):
    """Run a program on the simulated RTL; return (DRAM bytes after, register readings)."""
    after = dram.copy()
    with AmaranthSim(program.config, read_latency=read_latency, stall=stall, seed=seed,
                     max_cycles=max_cycles) as accelerator:
        readings = accelerator.run(program, after)
    return after, readings


def expected_after(program, dram):
    """DRAM image and statistics after the functional simulator runs the program."""
    golden = dram.copy()
    stats = FunctionalSim(program.config).run(program, golden)
    return golden, stats


def demo_program(seed=0):
    """The bundled sample with seeded A, W and bias."""
    program, dram, _ = sample_program(seed)
    return program, dram


@pytest.mark.parametrize(("stall", "latency"), [(0.0, 4), (0.3, 9)])
def test_demo_program_matches_functional_sim(stall, latency):
    program, dram = demo_program()
    golden, stats = expected_after(program, dram)
    got, regs = run_accelerator(program, dram, stall=stall, read_latency=latency, seed=3)
    np.testing.assert_array_equal(got, golden)
    assert regs["STATUS"] & 0b111 == 0b010  # done, not busy, no DRAM error
    assert regs["IRQ"] == 1
    assert regs["GEMM_UOPS"] == stats.gemm_uops
    assert regs["ALU_UOPS"] == stats.alu_uops
    assert regs["CONFIG_ID"] == SMALL.config_id
    assert 0 < regs["COMPUTE_BUSY"] <= regs["CYCLES"]


@pytest.mark.parametrize(
    ("preset", "mkn"), [("small", (8, 16, 8)), ("int4", (2, 32, 32)), ("nonsquare", (4, 16, 32))]
)
def test_double_buffered_matmul_matches_functional_sim(preset, mkn):
    sample = matmul_program(load_config(preset), *mkn, bias=True, relu=True, shift=1, seed=5)
    dram = sample.dram()
    golden, stats = expected_after(sample.program, dram)
    got, regs = run_accelerator(sample.program, dram, stall=0.2, seed=7)
    np.testing.assert_array_equal(got, golden)
    np.testing.assert_array_equal(sample.output(got), sample.expected())
    assert regs["GEMM_UOPS"] == stats.gemm_uops
