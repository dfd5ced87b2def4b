"""The execute pipeline against sim.functional, with real Memory buffers in a small harness.

Each test preloads UOP, INP, WGT, ACC and OUT, streams encoded GEMM/ALU instructions into the
pipeline, waits for the last `done`, and compares every ACC and OUT row (and the uop counts) with
the functional simulator run on the same buffers and instructions. Cycle counts are design
cycles. Randomness is seeded; a failure names its seed.
"""

import dataclasses
import gc
import random

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module
from amaranth.lib import memory, wiring
from amaranth.sim import Simulator

from hw.alu import TensorAlu
from hw.execute import ExecutePipeline
from hw.layouts import elem_layout, uop_layout
from isa import AluOp, Insn, Opcode, Program, encode, load_config
from isa.formats import IMM_BITS
from isa.semantics import clip_imm, mulr_max_shift
from sim.functional import FunctionalSim

SEED = 11
CFG = load_config("small")
# Narrow lanes, acc_bits 16, block_out != block_in, and a src field wider than an ACC index.
NARROW = dataclasses.replace(
    CFG, block_out=8, inp_bits=4, wgt_bits=2, acc_bits=16, out_bits=4, inp_depth=512
)


class Harness(Elaboratable):
    """An ExecutePipeline wired to its five buffers, as the compute unit will own them."""

    def __init__(self, cfg, transparent_acc=False):
        self.dut = ExecutePipeline(cfg)
        self.transparent_acc = transparent_acc
        shapes = {"uop": uop_layout(cfg)}
        shapes |= {kind: elem_layout(cfg, kind) for kind in ("inp", "wgt", "acc", "out")}
        self.mems = {
            kind: memory.Memory(shape=shape, depth=cfg.depth(kind), init=[])
            for kind, shape in shapes.items()
        }

    def elaborate(self, platform):
        """The pipeline, the buffers and their ports."""
        m = Module()
        m.submodules.dut = dut = self.dut
        for kind, mem in self.mems.items():
            m.submodules[kind] = mem
        acc_wr = self.mems["acc"].write_port()
        transparent = (acc_wr,) if self.transparent_acc else ()
        wiring.connect(m, dut.uop_rd, self.mems["uop"].read_port())
        wiring.connect(m, dut.inp_rd, self.mems["inp"].read_port())
        wiring.connect(m, dut.wgt_rd, self.mems["wgt"].read_port())
        wiring.connect(m, dut.acc_rd, self.mems["acc"].read_port(transparent_for=transparent))
        wiring.connect(m, dut.acc_wr, acc_wr)
        wiring.connect(m, dut.out_wr, self.mems["out"].write_port())
        return m


class Run:
    """Random buffer contents, a uop table and instructions; runs them on RTL and reference."""

    def __init__(self, cfg, seed):
        self.cfg, self.seed = cfg, seed
        rng = np.random.default_rng(seed)

        def lanes(kind, count):
            bits = cfg.lane_bits(kind)
            lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
            return rng.integers(lo, hi, size=(count, *cfg.elem_shape(kind)), endpoint=True)

        self.inp = lanes("inp", cfg.inp_depth)
        self.wgt = lanes("wgt", cfg.wgt_depth)
        self.acc = lanes("acc", cfg.acc_depth)
        self.out = lanes("out", cfg.acc_depth)
        self.uops: list[tuple[int, int, int]] = []
        self.insns: list[Insn] = []

    def kernel(self, uops) -> tuple[int, int]:
        """Append (dst, src, wgt) uops to the UOP buffer; return their [bgn, end)."""
        bgn = len(self.uops)
        self.uops.extend(uops)
        return bgn, len(self.uops)

    def gemm(self, uops, iters=(1, 1), dst=(0, 0), src=(0, 0), wgt=(0, 0), reset=0):
        """Append a GEMM over a new kernel of `uops`."""
        bgn, end = self.kernel(uops)
        self.insns.append(Insn(
            Opcode.GEMM, uop_bgn=bgn, uop_end=end, iter_out=iters[0], iter_in=iters[1],
            dst_factor_out=dst[0], dst_factor_in=dst[1], src_factor_out=src[0],
            src_factor_in=src[1], wgt_factor_out=wgt[0], wgt_factor_in=wgt[1], reset=reset,
        ))

    def alu(self, op, uops, iters=(1, 1), dst=(0, 0), src=(0, 0), imm=None, shift=0):
        """Append an ALU over a new kernel of (dst, src) uops; imm=None reads ACC[src] (MULR
        always does, and takes `shift` as its immediate)."""
        if op == AluOp.MULR:
            imm = None
        elif op == AluOp.CLIP and imm is None:
            imm = clip_imm(-100, 100)
        bgn, end = self.kernel([(d, s, 0) for d, s in uops])
        self.insns.append(Insn(
            Opcode.ALU, uop_bgn=bgn, uop_end=end, iter_out=iters[0], iter_in=iters[1],
            dst_factor_out=dst[0], dst_factor_in=dst[1], src_factor_out=src[0],
            src_factor_in=src[1], alu_op=op, use_imm=imm is not None,
            imm=shift if op == AluOp.MULR else imm or 0,
        ))

    def reference(self):
        """ACC, OUT and stats of the functional simulator on the same buffers."""
        sim = FunctionalSim(self.cfg)
        sim.inp[...] = self.inp
        sim.wgt[...] = self.wgt
        sim.acc[...] = self.acc
        sim.out[...] = self.out
        sim.uop[: len(self.uops)] = self.uops
        sim.uop_loaded[: len(self.uops)] = True
        stats = sim.run(Program(self.cfg, [*self.insns, Insn(Opcode.FINISH)]))
        return sim.acc, sim.out, stats

    def rtl(self, transparent_acc=False):
        """Run the instructions on the pipeline; return ACC, OUT, uop pulses and timings."""
        harness = Harness(self.cfg, transparent_acc)
        dut, mems = harness.dut, harness.mems
        words = [encode(insn, self.cfg) for insn in self.insns]
        result = {"gemm_uops": 0, "alu_uops": 0, "accepted": [], "done": [], "busy": []}
        cycle = 0

        async def monitor(ctx):
            nonlocal cycle
            async for _, _, accepted, done, busy, gemm, alu in ctx.tick().sample(
                dut.insn.valid & dut.insn.ready, dut.done, dut.busy, dut.gemm_uops, dut.alu_uops
            ):
                for name, flag in (("accepted", accepted), ("done", done), ("busy", busy)):
                    if flag:
                        result[name].append(cycle)
                result["gemm_uops"] += gemm
                result["alu_uops"] += alu
                cycle += 1

        async def tb(ctx):
            for kind, rows in (("inp", self.inp), ("wgt", self.wgt), ("acc", self.acc),
                               ("out", self.out)):
                for index, row in enumerate(rows):
                    ctx.set(mems[kind].data[index], row.ravel().tolist())
            for index, (d, s, w) in enumerate(self.uops):
                ctx.set(mems["uop"].data[index], {"dst": d, "src": s, "wgt": w})
            for word in words:
                ctx.set(dut.insn.payload, word)
                ctx.set(dut.insn.valid, 1)
                await ctx.tick().until(dut.insn.ready)
            ctx.set(dut.insn.valid, 0)
            if words:
                await ctx.tick().until(dut.done)
            await ctx.tick()  # let the monitor see the last edge
            for kind in ("acc", "out"):
                result[kind] = np.array(
                    [list(ctx.get(mems[kind].data[n])) for n in range(self.cfg.acc_depth)]
                ).reshape(self.cfg.acc_depth, *self.cfg.elem_shape(kind))

        sim = Simulator(harness)
        sim.add_clock(1e-8)
        sim.add_testbench(tb)
        sim.add_testbench(monitor, background=True)
        sim.run()
        return result

    def check(self, transparent_acc=False):
        """Run both models and compare everything; return the RTL result for timing checks."""
        got = self.rtl(transparent_acc)
        acc, out, stats = self.reference()
        where = f"seed {self.seed}"
        for kind, want in (("acc", acc), ("out", out)):
            bad = np.flatnonzero((got[kind] != want).any(axis=(1, 2)))
            assert not bad.size, (
                f"{where}: {kind.upper()} rows {bad[:8].tolist()} differ; first: "
                f"got {got[kind][bad[0]].tolist()}, want {want[bad[0]].tolist()}"
            )
        assert got["gemm_uops"] == stats.gemm_uops, where
        assert got["alu_uops"] == stats.alu_uops, where
        assert len(got["accepted"]) == len(got["done"]) == len(self.insns), where
        busy = sorted({c for a, d in zip(got["accepted"], got["done"], strict=True)
                       for c in range(a + 1, d + 1)})
        assert got["busy"] == busy, where
        return got


def test_gemm_loops_factors_and_reset():
    run = Run(CFG, SEED)
    run.gemm([(0, 0, 0), (1, 0, 0)], iters=(3, 2), dst=(2, 6), reset=1)
    run.gemm(
        [(0, 0, 0), (1, 3, 1), (2, 5, 2)], iters=(3, 2), dst=(3, 10), src=(7, 1), wgt=(3, 1)
    )
    run.gemm([(40, 9, 9)], iters=(4, 5), dst=(1, 0), src=(5, 1), wgt=(1, 2))  # sums along j
    run.gemm([(60, 0, 0)], iters=(2, 3), dst=(1, 1), reset=1)
    run.check()


@pytest.mark.parametrize("transparent_acc", [False, True])
def test_gemm_same_destination_back_to_back(transparent_acc):
    run = Run(CFG, SEED + 1)
    run.gemm([(5, s, s % 7) for s in range(6)])
    run.gemm([(8, 1, 1), (8, 2, 2), (9, 3, 3), (8, 4, 4), (9, 5, 5), (9, 6, 6)], iters=(2, 3))
    got = run.check(transparent_acc)
    # Forwarding, not stalls: the second GEMM's 36 uops take one cycle each.
    assert got["done"][1] - got["accepted"][1] == got["done"][0] - got["accepted"][0] + 30


@pytest.mark.parametrize("op", list(AluOp))
def test_alu_every_op_with_immediate_and_with_acc(op):
    run = Run(CFG, SEED + 2 + op)
    imm = {AluOp.SHR: 3, AluOp.RSHR: 5, AluOp.MUL: -3, AluOp.MIN: 1000,
           AluOp.CLIP: clip_imm(0, 127)}.get(op, -1234)
    # MULR reads ACC[src] every time (shifts 47, 13, 0); CLIP takes immediates only.
    run.alu(op, [(0, 0), (1, 0), (2, 0)], iters=(2, 3), dst=(3, 10), imm=imm, shift=47)
    run.alu(op, [(100, 200), (101, 150)], iters=(2, 2), dst=(2, 4), src=(1, 2), shift=13)
    run.alu(op, [(120, 0)], iters=(1, 4), dst=(0, 1), imm=-(1 << (IMM_BITS - 1)))
    run.check()


def test_alu_shift_amounts_from_acc_clamp():
    run = Run(CFG, SEED + 3)
    run.acc[200:240] = np.arange(-20, 20)[:, None, None] * np.array([1, 2, 3, -1])
    run.acc[40:80, 0, 0] = np.iinfo(np.int32).min  # every shift of the extremes
    run.acc[40:80, 0, 1] = np.iinfo(np.int32).max
    for op in (AluOp.SHR, AluOp.RSHR):
        run.alu(op, [(40, 200)], iters=(40, 1), dst=(1, 0), src=(1, 0))
    run.check()


@pytest.mark.parametrize("transparent_acc", [False, True])
def test_alu_chains_see_earlier_writes(transparent_acc):
    run = Run(CFG, SEED + 4)
    run.alu(AluOp.MAX, [(7, s) for s in range(20, 28)])  # reduction into one row
    run.alu(AluOp.ADD, [(30 + n, 29 + n) for n in range(8)])  # each reads the previous dst
    run.alu(AluOp.ADD, [(50, 0)], iters=(3, 4), imm=3)  # same row, back to back
    run.alu(AluOp.MUL, [(60, 61), (61, 60), (60, 60)], iters=(2, 1))
    run.alu(AluOp.MULR, [(62, 63), (63, 62), (62, 62)], iters=(2, 1), shift=3)
    run.alu(AluOp.MOV, [(70, 70), (71, 70), (72, 71)])  # self-copy, then a copy chain
    run.check(transparent_acc)


def test_mixed_instructions_back_to_back():
    run = Run(CFG, SEED + 5)
    run.gemm([(0, 0, 0), (1, 1, 1)], iters=(4, 1), dst=(2, 0), reset=1)
    run.gemm([(0, 2, 3), (1, 4, 5), (0, 6, 7)], iters=(4, 2), dst=(2, 0), src=(8, 1), wgt=(1, 3))
    run.alu(AluOp.MUL, [(0, 0)], iters=(8, 1), dst=(1, 0), imm=77)
    run.alu(AluOp.RSHR, [(0, 0)], iters=(8, 1), dst=(1, 0), imm=9)
    run.alu(AluOp.MAX, [(0, 0)], iters=(8, 1), dst=(1, 0), imm=-128)
    run.alu(AluOp.MIN, [(0, 0)], iters=(8, 1), dst=(1, 0), imm=127)
    got = run.check()
    assert got["accepted"][1:] == got["done"][:-1]  # each taken in the cycle the last is done


@pytest.mark.parametrize("cfg", [CFG, NARROW], ids=["small", "narrow"])
def test_random_programs(cfg):
    rng = random.Random(SEED)
    run = Run(cfg, SEED + 6)

    def index(kind):
        # Loop offsets add at most 16. Half of the indices crowd together, to collide often.
        return rng.randrange(16 if rng.random() < 0.5 else cfg.depth(kind) - 16)

    for _ in range(12):
        count = rng.randint(1, 5)
        iters = (rng.randint(1, 3), rng.randint(1, 3))
        factors = [(rng.randint(0, 4), rng.randint(0, 4)) for _ in range(3)]
        if rng.random() < 0.4:
            uops = [(index("acc"), index("inp"), index("wgt")) for _ in range(count)]
            run.gemm(uops, iters, *factors, reset=int(rng.random() < 0.2))
        else:
            uops = [(index("acc"), index("acc")) for _ in range(count)]
            imm = rng.choice([None, rng.randint(-40, 40)])
            run.alu(rng.choice(list(AluOp)), uops, iters, *factors[:2], imm=imm,
                    shift=rng.randint(0, mulr_max_shift(cfg.acc_bits)))
    run.check()


def test_empty_kernels_complete_at_once():
    run = Run(CFG, SEED + 7)
    run.gemm([], iters=(3, 3))
    run.gemm([(1, 1, 1)], iters=(0, 3))
    run.alu(AluOp.ADD, [(2, 0)], iters=(3, 0), imm=1)
    run.gemm([(3, 3, 3)])
    got = run.check()
    for accepted, done in zip(got["accepted"][:3], got["done"][:3], strict=True):
        assert done == accepted + 1


def test_long_gemm_runs_at_one_uop_per_cycle():
    run = Run(CFG, SEED + 8)
    uops = [(n, n, n % 16) for n in range(16)]
    run.gemm(uops, iters=(4, 4), dst=(16, 64), src=(16, 64), wgt=(16, 0))
    got = run.check()
    cycles = got["done"][0] - got["accepted"][0]
    count = 4 * 4 * 16
    print(f"GEMM: {count} uops in {cycles} cycles")
    assert cycles <= count + 10


def test_alu_throughput():
    run = Run(CFG, SEED + 9)
    run.alu(AluOp.ADD, [(n, 0) for n in range(64)], imm=5)
    run.alu(AluOp.ADD, [(n, 128 + n) for n in range(64)])
    run.alu(AluOp.ADD, [(100, 0)], iters=(1, 16), imm=1)
    got = run.check()
    imm, two_reads, chain = (d - a for a, d in zip(got["accepted"], got["done"], strict=True))
    print(f"ALU: imm {imm}, ACC src {two_reads}, dependent chain {chain} cycles for 64/64/16")
    assert imm <= 64 + 10
    assert two_reads <= 2 * 64 + 10
    # A dependent uop issues when the previous one is written: TensorAlu.latency + 1 cycles.
    assert chain <= (TensorAlu.latency + 1) * 16 + 10


def test_alu_source_row_reuse_issues_one_uop_per_cycle():
    run = Run(CFG, SEED + 10)
    # The compiler's epilogue: blocks outer (one source row each), pixels inner sharing it.
    run.alu(AluOp.MUL, [(0, 200)], iters=(4, 16), dst=(16, 1), src=(1, 0))
    run.alu(AluOp.MUL, [(n, 200 + n % 4) for n in range(64)])  # a new source row every uop
    got = run.check()
    reuse, fresh = (d - a for a, d in zip(got["accepted"], got["done"], strict=True))
    print(f"ALU ACC src: 64 uops in {reuse} cycles sharing 4 rows, {fresh} with 64 reads")
    assert reuse <= 64 + 4 + 10
    assert fresh >= 2 * 64


def test_requant_epilogue_runs_at_one_uop_per_cycle():
    run = Run(CFG, SEED + 14)
    run.acc[200:204] = np.arange(-3, 1)[:, None, None] * 1000 + 77  # the bias rows
    run.acc[210:214] = [[[12000, -9000, 3, 32767]]]  # the multiplier rows
    # The compiler's epilogue: MOV the bias, MULR by the multiplier rows, CLIP.
    run.alu(AluOp.MOV, [(0, 200)], iters=(4, 16), dst=(16, 1), src=(1, 0))
    run.alu(AluOp.MULR, [(0, 210)], iters=(4, 16), dst=(16, 1), src=(1, 0), shift=9)
    run.alu(AluOp.CLIP, [(0, 0)], iters=(4, 16), dst=(16, 1), imm=clip_imm(-128, 127))
    got = run.check()
    cycles = [d - a for a, d in zip(got["accepted"], got["done"], strict=True)]
    print(f"epilogue: MOV, MULR, CLIP of 64 uops in {cycles} cycles")
    assert cycles[1] <= 64 + 4 + 10 and cycles[2] <= 64 + 10


@pytest.mark.parametrize("transparent_acc", [False, True])
def test_alu_source_row_reuse_sees_writes_to_the_row(transparent_acc):
    run = Run(CFG, SEED + 11)
    # dst == src: the uop that reuses the row overwrites it; the next must see the new row.
    run.alu(AluOp.ADD, [(10, 50), (50, 50), (11, 50), (50, 50), (12, 50), (13, 50)])
    run.alu(AluOp.MUL, [(60, 60)], iters=(2, 3))  # fills and writes the same row
    # The row is written by the uop that fills the cache, then read by the next uops.
    run.alu(AluOp.MOV, [(70, 70), (71, 70), (70, 71), (72, 70), (73, 70)])
    # Outer loop walks the source rows, the inner one the destinations, which hit the sources.
    run.alu(AluOp.ADD, [(80, 80)], iters=(3, 4), dst=(1, 1), src=(1, 0))
    run.alu(AluOp.ADD, [(90, 91)], iters=(1, 3))  # the reusing uops stall on their dst
    run.check(transparent_acc)


def test_alu_source_row_cache_is_invalidated_between_instructions():
    run = Run(CFG, SEED + 12)
    run.alu(AluOp.ADD, [(0, 40)], iters=(1, 4), dst=(0, 1))
    run.alu(AluOp.ADD, [(40, 0)], imm=7)  # an immediate ALU writes the row
    run.alu(AluOp.ADD, [(4, 40)], iters=(1, 4), dst=(0, 1))
    run.alu(AluOp.MOV, [(40, 41)])  # a two-read ALU writes the row
    run.alu(AluOp.ADD, [(8, 40)], iters=(1, 4), dst=(0, 1))
    run.gemm([(40, 1, 1)])  # a GEMM writes the row
    run.alu(AluOp.ADD, [(12, 40)], iters=(1, 4), dst=(0, 1))
    run.check()


@pytest.mark.parametrize("seed", range(4))
def test_random_alu_source_reuse(seed):
    rng = random.Random(SEED + 100 + seed)
    run = Run(CFG, SEED + 100 + seed)
    rows = [rng.randrange(32) for _ in range(6)]  # few rows: sources repeat and get written
    for _ in range(10):
        if rng.random() < 0.15:
            run.gemm([(rng.choice(rows), 0, 0)], reset=1)
            continue
        uops = [(rng.choice(rows), rng.choice(rows)) for _ in range(rng.randint(1, 4))]
        iters = (rng.randint(1, 3), rng.randint(1, 4))
        factors = [(rng.randint(0, 1), rng.randint(0, 1)) for _ in range(2)]
        op = rng.choice([AluOp.ADD, AluOp.MOV, AluOp.MAX, AluOp.MIN])
        run.alu(op, uops, iters, *factors, imm=None if rng.random() < 0.8 else 3)
    run.check(transparent_acc=bool(seed % 2))


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")  # half-built on purpose
def test_rejects_non_config():
    with pytest.raises(TypeError, match="cfg must be an HwConfig"):
        ExecutePipeline(dataclasses.asdict(CFG))
    gc.collect()  # the half-built component warns when collected: do it under the filter
