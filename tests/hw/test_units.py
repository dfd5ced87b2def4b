"""Fetch routing and the stages' token gate, each on its own with stream models around it."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator
from stream_models import DramReader, Sink

from hw.fetch import Fetch
from hw.stage import TokenGate
from isa import Insn, MemType, Opcode, load_config
from isa.instructions import INSN_BYTES, Stage, encode, stage_of

SMALL = load_config("small")


def _stream(rng, count):
    """A random instruction stream covering every routing case."""
    choices = [
        Insn(Opcode.LOAD, mem_type=MemType.INP, x_size=1),
        Insn(Opcode.LOAD, mem_type=MemType.WGT, y_size=2),
        Insn(Opcode.LOAD, mem_type=MemType.UOP, sram_base=3),
        Insn(Opcode.LOAD, mem_type=MemType.ACC, dram_base=7),
        Insn(Opcode.STORE, mem_type=MemType.OUT, x_stride=5),
        Insn(Opcode.GEMM, uop_end=1, iter_out=1, iter_in=1),
        Insn(Opcode.ALU, alu_op=2, uop_end=1, use_imm=1, imm=-1),
        Insn(Opcode.FINISH),
    ]
    return [rng.choice(choices) for _ in range(count)]


@pytest.mark.parametrize(("seed", "rate", "base"), [(1, 1.0, 0x100), (2, 0.4, 0x230)])
def test_fetch_routes_every_instruction_in_order(seed, rate, base):
    rng = random.Random(seed)
    insns = _stream(rng, 40)
    dram = np.zeros(base + INSN_BYTES * len(insns) + 64, dtype=np.uint8)
    for i, insn in enumerate(insns):
        word = encode(insn, SMALL).to_bytes(INSN_BYTES, "little")
        dram[base + i * INSN_BYTES: base + (i + 1) * INSN_BYTES] = np.frombuffer(word, np.uint8)

    dut = Fetch(SMALL)
    reader = DramReader(dut.dram, dram, SMALL.axi_data_bits // 8, rng, latency=5, rate=rate)
    sinks = {stage: Sink(getattr(dut, f"{stage.name.lower()}_q"), rng, rate) for stage in Stage}
    busy_seen = []

    async def bench(ctx):
        ctx.set(dut.insn_base, base)
        ctx.set(dut.insn_count, len(insns))
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        for now in range(2000):
            reader.drive(ctx, now)
            for sink in sinks.values():
                sink.drive(ctx, now)
            busy_seen.append(ctx.get(dut.busy))
            reader.observe(ctx, now)
            for sink in sinks.values():
                sink.observe(ctx, now)
            await ctx.tick()
            if not busy_seen[-1] and sum(len(s.taken) for s in sinks.values()) == len(insns):
                break

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    for stage, sink in sinks.items():
        expected = [encode(i, SMALL) for i in insns if stage_of(i) == stage]
        assert [word for _, word in sink.taken] == expected, f"seed {seed}: {stage.name}"
    assert busy_seen[0] and not busy_seen[-1]


def test_token_gate_waits_for_tokens_and_room_then_pushes_on_completion():
    dut = TokenGate(has_prev=True, has_next=True)
    trace = []

    async def bench(ctx):
        ctx.set(dut.valid, 1)
        ctx.set(dut.pop_prev, 1)
        ctx.set(dut.push_next, 1)
        ctx.set(dut.next_can_push, 1)
        await ctx.tick()  # no token yet: stalled
        trace.append(("stall", ctx.get(dut.stall), ctx.get(dut.start)))
        ctx.set(dut.prev_can_pop, 1)
        trace.append(("start", ctx.get(dut.start), ctx.get(dut.prev_pop), ctx.get(dut.next_push)))
        await ctx.tick()
        ctx.set(dut.valid, 0)
        trace.append(("busy", ctx.get(dut.busy), ctx.get(dut.start)))
        ctx.set(dut.complete, 1)
        trace.append(("push", ctx.get(dut.next_push), ctx.get(dut.prev_push)))
        await ctx.tick()
        ctx.set(dut.complete, 0)
        trace.append(("idle", ctx.get(dut.busy), ctx.get(dut.next_push)))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert trace == [
        ("stall", 1, 0), ("start", 1, 1, 0), ("busy", 1, 0), ("push", 1, 0), ("idle", 0, 0),
    ]
