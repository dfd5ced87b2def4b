"""The whole accelerator in Amaranth's simulator, against an AXI DRAM model and an AXI-Lite host.

Each test runs a Program the way a host driver would (bases, instruction address and count,
START, poll DONE) and compares the whole DRAM image with the functional simulator's.
"""

from types import SimpleNamespace

import numpy as np
import pytest
from axi_models import AxiLiteMaster, AxiMemory, simulate

from hw.regmap import REGISTERS_BY_NAME
from hw.top import Accelerator
from isa import load_config
from isa.asm import assemble
from loom.demo import sample_text
from loom.samples import matmul_program
from sim.functional import FunctionalSim

SMALL = load_config("small")
BASES = ("UOP_BASE", "INP_BASE", "WGT_BASE", "ACC_BASE", "OUT_BASE")


def offset(name: str) -> int:
    return REGISTERS_BY_NAME[name].offset


def run_accelerator(program, dram: np.ndarray, *, seed=0, stall=0.0, read_latency=4,
                    max_cycles=40_000):
    """Run a program on the simulated RTL; return (DRAM bytes after, register readings)."""
    cfg = program.config
    dut = Accelerator(cfg)
    axi = SimpleNamespace(**{n: getattr(dut, f"m_axi_{n}") for n in dut.axi_signature.members})
    lite = SimpleNamespace(
        **{n: getattr(dut, f"s_axil_{n}") for n in dut.axil_signature.members}
    )
    size = -(-len(dram) // 4096) * 4096
    mem = AxiMemory(axi, size, read_latency=read_latency, stall=stall, seed=seed)
    mem.write_bytes(0, dram.tobytes())
    host = AxiLiteMaster(lite)
    readings = {}

    async def driver(ctx):
        for name in BASES:
            await host.write(ctx, offset(name), 0)
        await host.write(ctx, offset("INSN_BASE"), program.insn_offset)
        await host.write(ctx, offset("INSN_COUNT"), len(program.insns))
        await host.write(ctx, offset("CONTROL"), 0b11)  # START, IRQ_ENABLE
        while not (await host.read(ctx, offset("STATUS"))) & 0b10:
            await ctx.tick().repeat(8)
        assert ctx.get(dut.irq) == 1
        for name in ("STATUS", "CYCLES", "GEMM_UOPS", "ALU_UOPS", "COMPUTE_BUSY", "CONFIG_ID",
                     "LOAD_BUSY", "STORE_BUSY", "FETCH_BUSY"):
            readings[name] = await host.read(ctx, offset(name))

    simulate(dut, [driver], background=[mem.run], max_cycles=max_cycles)
    return np.frombuffer(bytes(mem.mem[: len(dram)]), dtype=np.uint8), readings


def expected_after(program, dram):
    """DRAM image and statistics after the functional simulator runs the program."""
    golden = dram.copy()
    stats = FunctionalSim(program.config).run(program, golden)
    return golden, stats


def demo_program(seed=0):
    program = assemble(sample_text(), source="sample")
    rng = np.random.default_rng(seed)
    dram = program.dram_image()
    program.write(dram, "A", rng.integers(-8, 9, size=(16, 1, 4)))
    program.write(dram, "W", rng.integers(-8, 9, size=(4, 4, 4)))
    program.write(dram, "bias", rng.integers(-64, 65, size=(2, 1, 4)))
    return program, dram


@pytest.mark.parametrize(("stall", "latency"), [(0.0, 4), (0.3, 9)])
def test_demo_program_matches_functional_sim(stall, latency):
    program, dram = demo_program()
    golden, stats = expected_after(program, dram)
    got, regs = run_accelerator(program, dram, stall=stall, read_latency=latency, seed=3)
    np.testing.assert_array_equal(got, golden)
    assert regs["STATUS"] & 0b111 == 0b010  # done, not busy, no DRAM error
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
