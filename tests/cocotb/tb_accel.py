"""cocotb testbenches of the generated `loom_accel`: an AxiRam DRAM and an AXI4-Lite host.

cocotb imports this module inside the simulator; `tests/cocotb/test_regression.py` builds the
model and passes the HwConfig in the environment variable `LOOM_COCOTB_CONFIG` (JSON). Every
program test compares the whole DRAM image after the run with the functional simulator's.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam

from hw.regmap import REGISTERS, REGISTERS_BY_NAME, VERSION
from isa.asm import assemble
from isa.config import HwConfig
from isa.formats import AluOp, Opcode
from isa.program import Program
from loom.demo import sample_text
from loom.samples import matmul_program
from sim.functional import FunctionalSim
from sim.progen import PAD_FIELDS, random_program

CONFIG_ENV = "LOOM_COCOTB_CONFIG"
PAGE_BYTES = 4096
# A run that takes longer than this is hung; the programs here finish in a few thousand cycles.
MAX_CYCLES = 200_000
POLL_CYCLES = 64  # cycles between STATUS polls: polling every cycle would slow the simulation
BASES = ("UOP_BASE", "INP_BASE", "WGT_BASE", "ACC_BASE", "OUT_BASE")
RW_REGISTERS = ("INSN_BASE", "INSN_COUNT", *BASES)
START = REGISTERS_BY_NAME["CONTROL"].fields[0].mask
RANDOM_SEEDS = 16  # enough seeds that every ALU op, a padded load and a strided store appear
WANTED = {op.name for op in AluOp} | {"padded load", "strided store"}
STATUS_BUSY, STATUS_DONE, STATUS_DRAM_ERROR = 0b001, 0b010, 0b100


def config() -> HwConfig:
    """The HwConfig of the model under test, from the environment the pytest side set."""
    return HwConfig.from_dict(json.loads(os.environ[CONFIG_ENV]), CONFIG_ENV)


def offset(name: str) -> int:
    """Byte offset of a register in the AXI4-Lite window."""
    return REGISTERS_BY_NAME[name].offset


class Bench:
    """Clock, reset, an AxiRam DRAM on `m_axi_*` and an AxiLiteMaster host on `s_axil_*`."""

    def __init__(self, dut, dram_bytes: int = PAGE_BYTES):
        self.dut = dut
        self.cfg = config()
        # The AXI models log every transaction at INFO: megabytes of log and a slower simulation.
        logging.getLogger(f"cocotb.{dut._name}").setLevel(logging.WARNING)
        self.ram = AxiRam(AxiBus.from_prefix(dut, "m_axi"), dut.clk, dut.rst,
                          size=-(-dram_bytes // PAGE_BYTES) * PAGE_BYTES)
        self.host = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)

    async def reset(self) -> None:
        """Start the clock and hold reset for a few cycles (cocotb ends a test's tasks with it)."""
        Clock(self.dut.clk, 10, unit="ns").start()
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 5)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 2)

    async def read(self, name: str) -> int:
        """Read a 32-bit register by name."""
        return await self.host.read_dword(offset(name))

    async def write(self, name: str, value: int) -> None:
        """Write a 32-bit register by name."""
        await self.host.write_dword(offset(name), value)

    def set_pauses(self, seed: int | None) -> None:
        """Random back-pressure on every DRAM channel (None: none), seeded per channel."""
        channels = (self.ram.write_if.aw_channel, self.ram.write_if.w_channel,
                    self.ram.write_if.b_channel, self.ram.read_if.ar_channel,
                    self.ram.read_if.r_channel)
        for index, channel in enumerate(channels):
            if seed is None:
                channel.set_pause_generator(None)
                channel.pause = False  # clearing the generator leaves its last value in force
            else:
                rng = random.Random(seed * 16 + index)
                channel.set_pause_generator(rng.random() < 0.4 for _ in itertools.count())

    async def run(self, program: Program, dram: np.ndarray) -> dict[str, int]:
        """Run a program on a DRAM image like a host driver; return the image and counters after."""
        self.ram.write(0, bytes(self.ram.size))  # a previous run's results must not leak in
        self.ram.write(0, dram.tobytes())
        for name in BASES:
            await self.write(name, 0)
        await self.write("INSN_BASE", program.insn_offset)
        await self.write("INSN_COUNT", len(program.insns))
        await self.write("CONTROL", START)
        waited = 0
        while not (status := await self.read("STATUS")) & STATUS_DONE:
            assert waited < MAX_CYCLES, f"no STATUS.DONE after {MAX_CYCLES} cycles"
            await ClockCycles(self.dut.clk, POLL_CYCLES)
            waited += POLL_CYCLES
        assert status & (STATUS_BUSY | STATUS_DRAM_ERROR) == 0, f"STATUS {status:#x} after DONE"
        readings = {r.name: await self.read(r.name) for r in REGISTERS if r.counter}
        readings["DRAM"] = np.frombuffer(self.ram.read(0, len(dram)), dtype=np.uint8).copy()
        return readings


async def check_program(bench: Bench, program: Program, dram: np.ndarray) -> dict[str, int]:
    """Run a program on the RTL and the functional simulator; assert identical DRAM images."""
    golden = dram.copy()
    stats = FunctionalSim(program.config).run(program, golden)
    got = await bench.run(program, dram)
    mismatch = np.flatnonzero(got["DRAM"] != golden)
    assert mismatch.size == 0, (
        f"{mismatch.size} DRAM bytes differ from the functional simulator, first at "
        f"{mismatch[0]:#x}: got {got['DRAM'][mismatch[0]]}, expected {golden[mismatch[0]]}"
    )
    assert got["GEMM_UOPS"] == stats.gemm_uops
    assert got["ALU_UOPS"] == stats.alu_uops
    assert 0 < got["COMPUTE_BUSY"] <= got["CYCLES"]
    return got


def demo_program(cfg: HwConfig) -> tuple[Program, np.ndarray]:
    """The bundled sample for `cfg` (its `.config small` line dropped) with seeded data."""
    text = "\n".join(ln for ln in sample_text().splitlines() if not ln.startswith(".config"))
    program = assemble(text, source="sample", config=cfg)
    rng = np.random.default_rng(0)
    dram = program.dram_image()
    for name in ("A", "W", "bias"):
        seg = program.segment(name)
        limit = 64 if seg.mem.lower() == "acc" else 8
        program.write(dram, name, rng.integers(-limit, limit + 1, size=seg.shape(cfg)))
    return program, dram


def matmul(cfg: HwConfig) -> tuple[Program, np.ndarray]:
    """The double-buffered 8x16x8 matmul sample with bias, ReLU and a shift."""
    sample = matmul_sample(cfg)
    return sample.program, sample.dram()


def matmul_sample(cfg: HwConfig):
    """The 8x16x8 matmul as a loom.samples Sample (program, data and a numpy reference)."""
    return matmul_program(cfg, 8, 16, 8, bias=True, relu=True, shift=1, seed=5)


def coverage(programs: list[Program]) -> set[str]:
    """ALU ops, padded loads and strided stores that a set of programs exercises."""
    seen = set()
    for program in programs:
        for insn in program.insns:
            f = insn.fields()
            if insn.op == Opcode.ALU:
                seen.add(AluOp(f["alu_op"]).name)
            elif insn.op == Opcode.LOAD and f["x_size"] and any(f[k] for k in PAD_FIELDS):
                seen.add("padded load")
            elif insn.op == Opcode.STORE and f["y_size"] > 1 and f["x_stride"] != f["x_size"]:
                seen.add("strided store")
    return seen


@cocotb.test()
async def register_map(dut):
    """CONFIG_ID and VERSION, read-back of the rw registers, zeros from unmapped offsets."""
    bench = Bench(dut)
    await bench.reset()
    assert await bench.read("CONFIG_ID") == bench.cfg.config_id
    assert await bench.read("VERSION") == VERSION
    assert await bench.read("STATUS") & (STATUS_BUSY | STATUS_DONE) == 0
    for index, name in enumerate(RW_REGISTERS):
        value = (0x1234_5000 + index * 0x40) & ~(bench.cfg.axi_data_bits // 8 - 1)
        await bench.write(name, value)
    for index, name in enumerate(RW_REGISTERS):
        value = (0x1234_5000 + index * 0x40) & ~(bench.cfg.axi_data_bits // 8 - 1)
        assert await bench.read(name) == value, name
    mapped = {r.offset + 4 * w for r in REGISTERS for w in range(r.words)}
    for address in range(0, 0x100, 4):
        if address not in mapped:
            assert await bench.host.read_dword(address) == 0, f"unmapped {address:#x}"
    assert await bench.host.read_dword(0xFFC) == 0


@cocotb.test()
async def demo_sample(dut):
    """The bundled sample program matches the functional simulator."""
    program, dram = demo_program(config())
    bench = Bench(dut, len(dram))
    await bench.reset()
    await check_program(bench, program, dram)


@cocotb.test()
async def matmul_8x16x8(dut):
    """The double-buffered matmul sample matches the functional simulator; IRQ follows DONE."""
    sample = matmul_sample(config())
    program, dram = sample.program, sample.dram()
    bench = Bench(dut, len(dram))
    await bench.reset()
    got = await check_program(bench, program, dram)
    # The functional simulator is the golden model, but a shared mistake must not pass silently.
    np.testing.assert_array_equal(sample.output(got["DRAM"]), sample.expected())
    dut._log.info("matmul counters: %s", {k: v for k, v in got.items() if k != "DRAM"})
    # Compute waits for load tokens and store for compute tokens: zero would mean no handshake.
    assert got["COMPUTE_STALL"] > 0 and got["STORE_STALL"] > 0
    await RisingEdge(dut.clk)
    assert dut.irq.value == 0  # DONE, but the run was started without IRQ_ENABLE
    await bench.write("CONTROL", 0b10)
    await ClockCycles(dut.clk, 2)
    assert dut.irq.value == 1


@cocotb.test()
async def backpressure(dut):
    """Random stalls on all five AXI channels leave the results unchanged and cost cycles."""
    program, dram = matmul(config())
    bench = Bench(dut, len(dram))
    await bench.reset()
    free = await check_program(bench, program, dram)
    for seed in (1, 2):
        bench.set_pauses(seed)
        stalled = await check_program(bench, program, dram)
        assert stalled["CYCLES"] > free["CYCLES"], (stalled["CYCLES"], free["CYCLES"])
    bench.set_pauses(None)


@cocotb.test()
async def random_programs(dut):
    """Seeded random legal programs (pads, strides, every ALU op, token traffic) match."""
    cfg = config()
    cases = [random_program(cfg, seed) for seed in range(RANDOM_SEEDS)]
    missing = WANTED - coverage([program for program, _ in cases])
    assert not missing, f"the random programs no longer exercise {sorted(missing)}"
    bench = Bench(dut, max(len(dram) for _, dram in cases))
    await bench.reset()
    for seed, (program, dram) in enumerate(cases):
        dut._log.info("random program %d: %d instructions", seed, len(program.insns))
        bench.set_pauses(seed + 10 if seed % 2 else None)
        await check_program(bench, program, dram)


@cocotb.test()
async def random_medium_programs(dut):
    """Two larger random programs (more rounds, longer transfers), one with AXI stalls."""
    cfg = config()
    cases = [random_program(cfg, 100 + seed, size="medium") for seed in range(2)]
    bench = Bench(dut, max(len(dram) for _, dram in cases))
    await bench.reset()
    for seed, (program, dram) in enumerate(cases):
        bench.set_pauses(seed + 20 if seed else None)
        await check_program(bench, program, dram)
