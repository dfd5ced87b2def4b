"""The functional simulator against naive per-execution models, numpy and hand-computed values."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sim.functional as functional
from isa.config import load_config
from isa.errors import DeadlockError, SimError
from isa.formats import AluOp, MemType, Opcode
from isa.instructions import NOP_COMPUTE, NOP_LOAD, NOP_STORE, Insn
from isa.packing import wrap
from isa.program import Program, Segment
from isa.semantics import clip_bounds, clip_imm
from loom.samples import matmul_program
from sim.functional import FunctionalSim, run

SMALL = load_config("small")
FINISH = Insn(Opcode.FINISH)


def make_program(cfg, insns, segments=(), kernels=None) -> Program:
    """A program of the given instructions followed by FINISH."""
    return Program(cfg, [*insns, FINISH], list(segments), kernels)


def random_sim(cfg, rng) -> FunctionalSim:
    """A simulator whose buffers and uops hold random in-range values (uops marked loaded)."""
    sim = FunctionalSim(cfg)
    for buf, bits in ((sim.inp, cfg.inp_bits), (sim.wgt, cfg.wgt_bits), (sim.acc, cfg.acc_bits)):
        buf[...] = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), size=buf.shape)
    sim.out[...] = wrap(sim.acc, cfg.out_bits)
    sim.uop_loaded[...] = True
    return sim


def set_uops(sim: FunctionalSim, uops) -> None:
    """Put (dst, src, wgt) rows at the start of the uop buffer."""
    sim.uop[: len(uops)] = np.asarray(uops, dtype=np.int64).reshape(len(uops), 3)


def executions(insn: Insn, sim: FunctionalSim):
    """(dst, src, wgt) of every micro-op execution, in order, as the ISA text defines them."""
    f = insn.fields()
    for i in range(insn.iter_out):
        for j in range(insn.iter_in):
            for k in range(insn.uop_bgn, insn.uop_end):
                d, s, w = (int(v) for v in sim.uop[k])
                yield (
                    d + i * f["dst_factor_out"] + j * f["dst_factor_in"],
                    s + i * f["src_factor_out"] + j * f["src_factor_in"],
                    w + i * f.get("wgt_factor_out", 0) + j * f.get("wgt_factor_in", 0),
                )


def naive_gemm(insn: Insn, sim: FunctionalSim):
    """ACC and OUT after a GEMM, one execution at a time."""
    cfg = sim.cfg
    acc, out = sim.acc.copy(), sim.out.copy()
    for d, s, w in executions(insn, sim):
        acc[d] = 0 if insn.reset else wrap(acc[d] + sim.inp[s] @ sim.wgt[w].T, cfg.acc_bits)
        out[d] = wrap(acc[d], cfg.out_bits)
    return acc, out


def lane_alu(op: AluOp, x: int, y: int, bits: int, imm: int = 0) -> int:
    """One ALU lane with Python integers (no overflow anywhere)."""
    def wrapped(v: int, width: int = bits) -> int:
        return (v + (1 << (width - 1))) % (1 << width) - (1 << (width - 1))

    if op == AluOp.MULR:
        product = x * wrapped(y, 16)
        return wrapped((product + (1 << imm >> 1)) >> imm)
    if op == AluOp.CLIP:
        return min(max(x, wrapped(y, 8)), wrapped(y >> 8, 8))
    n = max(-bits, min(bits, y))
    if op in (AluOp.SHR, AluOp.RSHR) and n < 0:
        return wrapped(x << -n)
    return {
        AluOp.MIN: lambda: min(x, y),
        AluOp.MAX: lambda: max(x, y),
        AluOp.ADD: lambda: wrapped(x + y),
        AluOp.MUL: lambda: wrapped(x * wrapped(y, 16)),
        AluOp.MOV: lambda: y,
        AluOp.SHR: lambda: x >> n,
        AluOp.RSHR: lambda: (x + (1 << (n - 1))) >> n if n > 0 else x,
    }[op]()


def naive_alu(insn: Insn, sim: FunctionalSim):
    """ACC and OUT after an ALU instruction, one execution and one lane at a time."""
    cfg = sim.cfg
    acc, out = sim.acc.copy(), sim.out.copy()
    op = AluOp(insn.alu_op)
    for d, s, _ in executions(insn, sim):
        y = np.full(acc[d].shape, insn.imm) if insn.use_imm else acc[s].copy()
        acc[d] = [
            [lane_alu(op, int(a), int(b), cfg.acc_bits, insn.imm)
             for a, b in zip(xr, yr, strict=True)]
            for xr, yr in zip(acc[d], y, strict=True)
        ]
        out[d] = wrap(acc[d], cfg.out_bits)
    return acc, out


def check_against(naive, insn: Insn, sim: FunctionalSim) -> None:
    """Run one instruction on the simulator and compare ACC and OUT with a naive model."""
    acc, out = naive(insn, sim)
    sim.run(make_program(sim.cfg, [insn]))
    np.testing.assert_array_equal(sim.acc, acc)
    np.testing.assert_array_equal(sim.out, out)


def narrow(inp_bits: int, wgt_bits: int, out_bits: int = 8):
    """The small config with 8x8 blocks (so 1-bit elements are whole bytes) and these widths."""
    return dataclasses.replace(
        SMALL, block_in=8, block_out=8, inp_bits=inp_bits, wgt_bits=wgt_bits, out_bits=out_bits
    )


# -- GEMM ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("inp_bits", "wgt_bits", "out_bits"),
    [(1, 1, 1), (2, 2, 2), (4, 4, 4), (8, 8, 8), (1, 8, 4), (8, 2, 1), (2, 4, 8), (4, 1, 2)],
)
def test_matmul_every_bit_width_matches_numpy(inp_bits, wgt_bits, out_bits):
    cfg = narrow(inp_bits, wgt_bits, out_bits)
    sample = matmul_program(cfg, 8, 32, 24, shift=2, seed=inp_bits * 10 + wgt_bits)
    dram, _ = run(sample.program, sample.dram())
    np.testing.assert_array_equal(sample.output(dram), sample.expected())


def _random_gemm(rng, cfg, reset: int) -> Insn:
    """A GEMM with random loops, factors and uops (duplicate dst included), all in range."""
    iters = rng.integers(1, 5, size=2)
    uops = int(rng.integers(1, 6))
    factors = {}
    for name in ("dst", "src", "wgt"):
        # Zero factors make the reduction and shared-weight axes the fast path looks for.
        factors[f"{name}_factor_out"], factors[f"{name}_factor_in"] = (
            int(v) if rng.random() < 0.6 else 0 for v in rng.integers(0, 8, size=2)
        )
    return Insn(Opcode.GEMM, uop_bgn=3, uop_end=3 + uops, iter_out=int(iters[0]),
                iter_in=int(iters[1]), reset=reset, **factors)


@pytest.mark.parametrize("seed", range(24))
def test_gemm_matches_naive_loop(seed):
    rng = np.random.default_rng(seed)
    cfg = load_config("nonsquare") if seed % 3 == 0 else SMALL
    sim = random_sim(cfg, rng)
    insn = _random_gemm(rng, cfg, reset=int(seed % 8 == 7))
    dst_same = seed % 4 == 1  # every uop hits one ACC row: the uop axis is a reduction
    set_uops(sim, [
        (5 if dst_same else rng.integers(0, 40), rng.integers(0, 40), rng.integers(0, 20))
        for _ in range(insn.uop_end)
    ])
    check_against(naive_gemm, insn, sim)


def test_gemm_duplicate_dst_accumulates():
    sim = random_sim(SMALL, np.random.default_rng(1))
    set_uops(sim, [(7, 1, 2), (7, 3, 4), (7, 1, 2)])
    insn = Insn(Opcode.GEMM, uop_bgn=0, uop_end=3, iter_out=2, iter_in=1, src_factor_out=5)
    before = sim.acc[7].copy()
    expected = before + sum(sim.inp[s] @ sim.wgt[w].T for _, s, w in executions(insn, sim))
    sim.run(make_program(SMALL, [insn]))
    np.testing.assert_array_equal(sim.acc[7], wrap(expected, 32))


def test_gemm_reset_zeroes_acc_and_out_only_where_addressed():
    sim = random_sim(SMALL, np.random.default_rng(2))
    set_uops(sim, [(10, 0, 0)])
    keep = sim.acc.copy()
    sim.run(make_program(SMALL, [Insn(Opcode.GEMM, uop_bgn=0, uop_end=1, iter_out=3, iter_in=1,
                                      dst_factor_out=2, reset=1)]))
    rows = [10, 12, 14]
    assert not sim.acc[rows].any() and not sim.out[rows].any()
    np.testing.assert_array_equal(np.delete(sim.acc, rows, 0), np.delete(keep, rows, 0))


def test_large_instructions_run_in_boxes(monkeypatch):
    monkeypatch.setattr(functional, "CHUNK_BYTES", 3000)
    for seed in range(6):
        rng = np.random.default_rng(100 + seed)
        sim = random_sim(SMALL, rng)
        set_uops(sim, rng.integers(0, 30, size=(8, 3)))
        insn = _random_gemm(rng, SMALL, reset=0).replace(iter_out=5, iter_in=4)
        check_against(naive_gemm, insn, sim)
        alu = Insn(Opcode.ALU, uop_bgn=0, uop_end=5, iter_out=5, iter_in=4, dst_factor_out=40,
                   dst_factor_in=8, src_factor_out=1, alu_op=AluOp.ADD)
        check_against(naive_alu, alu, sim)


# -- ALU ----------------------------------------------------------------------------------------


ALU_IMMEDIATES = [0, 1, 3, 31, 32, 40, -1, -3, -32, -40, 32767, -32768]


@pytest.mark.parametrize("op", list(AluOp))
@pytest.mark.parametrize("use_imm", [1, 0])
def test_alu_matches_naive_loop(op, use_imm):
    rng = np.random.default_rng(int(op) * 2 + use_imm)
    sim = random_sim(SMALL, rng)
    if op in (AluOp.SHR, AluOp.RSHR) and not use_imm:
        sim.acc[100:120] = rng.choice(ALU_IMMEDIATES, size=sim.acc[100:120].shape)
    set_uops(sim, [(0, 100, 0), (1, 101, 0), (2, 102, 0)])
    if op == AluOp.MULR:  # its immediate is the shift and its operand always ACC[src]
        use_imm, immediates = 0, [0, 1, 15, 16, 31, 46, 47]
    elif op == AluOp.CLIP:  # immediate only
        use_imm, immediates = 1, [*ALU_IMMEDIATES, clip_imm(0, 127), clip_imm(-128, 127)]
    else:
        immediates = ALU_IMMEDIATES if use_imm else [0]
    for imm in immediates:
        insn = Insn(Opcode.ALU, uop_bgn=0, uop_end=3, iter_out=3, iter_in=2, dst_factor_out=3,
                    dst_factor_in=30, src_factor_out=5, src_factor_in=1, alu_op=op,
                    use_imm=use_imm, imm=imm)
        check_against(naive_alu, insn, sim)


def _one_lane(op: AluOp, x: int, y: int, acc_bits: int = 32, shift: int = 0) -> int:
    """x op y on one lane; CLIP takes y as its immediate, MULR takes `shift`."""
    cfg = dataclasses.replace(SMALL, acc_bits=acc_bits)
    sim = FunctionalSim(cfg)
    sim.acc[0] = x
    sim.acc[1] = y
    sim.uop_loaded[0] = True
    set_uops(sim, [(0, 1, 0)])
    imm = {"use_imm": 1, "imm": y} if op == AluOp.CLIP else {"imm": shift}
    sim.run(make_program(cfg, [Insn(Opcode.ALU, uop_bgn=0, uop_end=1, iter_out=1, iter_in=1,
                                    alu_op=op, **imm)]))
    assert (sim.out[0] == wrap(sim.acc[0], 8)).all()
    return int(sim.acc[0, 0, 0])


@pytest.mark.parametrize(
    ("op", "x", "y", "expected"),
    [
        (AluOp.SHR, 5, -3, 40),  # negative shift is a left shift
        (AluOp.SHR, 1, -31, -(1 << 31)),  # ... wrapped to acc_bits
        (AluOp.SHR, 3, -40, 0),  # clamped to -acc_bits: everything shifts out
        (AluOp.SHR, -7, 1, -4),  # arithmetic: rounds toward -inf
        (AluOp.SHR, -7, 99, -1),  # clamped to acc_bits: sign fill
        (AluOp.RSHR, 3, 1, 2),  # 1.5 rounds up
        (AluOp.RSHR, -3, 1, -1),  # -1.5 rounds half up, to -1
        (AluOp.RSHR, 6, 2, 2),  # 1.5
        (AluOp.RSHR, -6, 2, -1),  # -1.5
        (AluOp.RSHR, 5, 2, 1),  # 1.25
        (AluOp.RSHR, (1 << 31) - 1, 4, 1 << 27),  # no overflow in the rounding add
        (AluOp.RSHR, 5, -2, 20),  # n <= 0: as SHR
        (AluOp.MUL, 1 << 20, 1 << 12, 0),  # wraps to 32 bits
        (AluOp.MUL, 65535, 65537, 65535),  # y's bits above its low 16 are ignored
        (AluOp.MUL, 3, 0x7FFF0002, 6),
        (AluOp.MUL, 3, 0xFFFF, -3),  # y's low 16 bits are signed
        (AluOp.MUL, -5, -(1 << 16) - 2, 10),
        (AluOp.MUL, 1 << 17, -(1 << 15), 0),  # -2**32 wraps to 0
        (AluOp.MUL, (1 << 31) - 1, (1 << 15) - 1, (1 << 31) - (1 << 15) + 1),  # wraps
        (AluOp.ADD, (1 << 31) - 1, 1, -(1 << 31)),
        (AluOp.MIN, -5, 3, -5),
        (AluOp.MAX, -5, 3, 3),
        (AluOp.MOV, 9, -4, -4),
    ],
)
def test_alu_hand_computed(op, x, y, expected):
    assert _one_lane(op, x, y) == expected


TOP = (1 << 31) - 1
BOTTOM = -(1 << 31)


@pytest.mark.parametrize(
    ("x", "m", "shift", "expected"),
    [
        (3, 1, 1, 2),  # 1.5 rounds half up
        (-3, 1, 1, -1),  # -1.5 rounds half up, to -1
        (-6, 1, 2, -1),  # -1.5
        (-5, 3, 2, -4),  # -3.75
        (5, -1, 0, -5),  # shift 0: the product itself
        (1, 0x18000, 0, -32768),  # the multiplier is the low 16 bits of ACC[src], signed
        (7, -(1 << 20) + 3, 0, 21),  # ... whatever the high bits hold
        (BOTTOM, -32768, 47, 1),  # the largest product 2**46 is exact; 0.5 rounds up
        (BOTTOM, 32767, 47, 0),  # -(2**46 - 2**31) / 2**47 rounds to 0
        (TOP, 32767, 47, 0),
        (BOTTOM, -32768, 0, 0),  # 2**46 wraps to 32 bits
        (TOP, 32767, 16, (1 << 30) - (1 << 15)),  # no intermediate wrap of the product
        (-(1 << 30), 4, 1, BOTTOM),  # -2**31 fits
        ((1 << 30), 4, 1, BOTTOM),  # 2**31 wraps
    ],
)
def test_alu_mulr_hand_computed(x, m, shift, expected):
    assert _one_lane(AluOp.MULR, x, m, shift=shift) == expected


def test_alu_mulr_wraps_to_narrow_accumulator():
    assert _one_lane(AluOp.MULR, 32767, 32767, acc_bits=16, shift=15) == 32766
    assert _one_lane(AluOp.MULR, 32767, 32767, acc_bits=16, shift=14) == 65532 - 65536
    assert _one_lane(AluOp.MULR, -32768, -32768, acc_bits=16, shift=31) == 1


@pytest.mark.parametrize(
    ("x", "bounds", "expected"),
    [
        (200, (0, 127), 127),
        (-5, (0, 127), 0),
        (50, (0, 127), 50),
        (BOTTOM, (-128, 127), -128),
        (TOP, (-128, 127), 127),
        (-128, (-128, -128), -128),
        (0, (10, -10), -10),  # lo > hi: hi
    ],
)
def test_alu_clip_hand_computed(x, bounds, expected):
    assert _one_lane(AluOp.CLIP, x, clip_imm(*bounds)) == expected


def test_clip_immediate_encoding():
    assert clip_imm(0, 127) == 0x7F00 and clip_imm(-128, 127) == 0x7F80
    assert clip_imm(-1, -1) == -1 and clip_imm(-128, -128) == -32640
    for lo in range(-128, 128, 5):
        for hi in range(-128, 128, 7):
            assert clip_bounds(clip_imm(lo, hi)) == (lo, hi)
    with pytest.raises(ValueError, match="signed bytes"):
        clip_imm(0, 128)


def test_alu_add_wraps_to_narrow_accumulator():
    assert _one_lane(AluOp.ADD, 32767, 1, acc_bits=16) == -32768


def test_alu_mov_immediate_broadcasts_to_every_lane():
    sim = random_sim(SMALL, np.random.default_rng(3))
    set_uops(sim, [(4, 0, 0)])
    sim.run(make_program(SMALL, [Insn(Opcode.ALU, uop_bgn=0, uop_end=1, iter_out=2, iter_in=1,
                                      dst_factor_out=1, alu_op=AluOp.MOV, use_imm=1, imm=-300)]))
    assert (sim.acc[4:6] == -300).all() and (sim.out[4:6] == wrap(-300, 8)).all()


@pytest.mark.parametrize(
    ("uops", "use_imm"),
    [
        ([(1, 0, 0), (2, 1, 0), (3, 2, 0)], 0),  # each uop reads the previous one's result
        ([(5, 5, 0), (5, 5, 0)], 1),  # the same dst twice with an immediate
        ([(0, 1, 0), (1, 2, 0), (2, 3, 0)], 0),  # reads a row before it is written: vectorizable
    ],
)
def test_alu_sequential_semantics(uops, use_imm):
    sim = random_sim(SMALL, np.random.default_rng(4))
    set_uops(sim, uops)
    insn = Insn(Opcode.ALU, uop_bgn=0, uop_end=len(uops), iter_out=3, iter_in=1,
                dst_factor_out=0 if use_imm else 4, src_factor_out=0 if use_imm else 4,
                alu_op=AluOp.ADD, use_imm=use_imm, imm=7 * use_imm)
    check_against(naive_alu, insn, sim)


# -- LOAD and STORE -----------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_padded_strided_load(bits):
    cfg = narrow(bits, bits)
    rng = np.random.default_rng(bits)
    lo, hi = -(1 << (bits - 1)), 1 << (bits - 1)
    values = rng.integers(lo, hi, size=(30, *cfg.elem_shape("inp")))
    seg = Segment("data", "input", "inp", 30)
    probe = Program(cfg, [FINISH], [seg])
    insn = Insn(Opcode.LOAD, mem_type=MemType.INP, sram_base=7,
                dram_base=probe.elem_addr("data", 2), y_size=3, x_size=4, x_stride=9,
                y_pad_0=1, y_pad_1=2, x_pad_0=3, x_pad_1=1)
    program = make_program(cfg, [insn], [seg])
    dram = program.dram_image()
    program.write(dram, "data", values)
    sim = FunctionalSim(cfg)
    sim.inp[...] = 1
    stats = sim.run(program, dram)

    expected = np.zeros((1 + 3 + 2, 3 + 4 + 1, *cfg.elem_shape("inp")), dtype=np.int64)
    for y in range(3):
        expected[1 + y, 3:7] = values[2 + y * 9 : 2 + y * 9 + 4]
    np.testing.assert_array_equal(sim.inp[7 : 7 + 48], expected.reshape(48, *cfg.elem_shape("inp")))
    assert (sim.inp[:7] == 1).all() and (sim.inp[55:] == 1).all()
    assert stats.bytes_loaded["inp"] == 12 * cfg.elem_bytes("inp")


def test_load_acc_writes_acc_not_out_and_stride_zero_broadcasts():
    cfg = SMALL
    seg = Segment("bias", "weights", "acc", 2)
    probe = Program(cfg, [FINISH], [seg])
    insn = Insn(Opcode.LOAD, mem_type=MemType.ACC, sram_base=4, dram_base=probe.elem_addr("bias"),
                y_size=3, x_size=2, x_stride=0)
    program = make_program(cfg, [insn], [seg])
    dram = program.dram_image()
    bias = np.array([[[1 << 30, -5, 7, -(1 << 31)]], [[3, 2, 1, 0]]])
    program.write(dram, "bias", bias)
    sim = FunctionalSim(cfg)
    sim.run(program, dram)
    np.testing.assert_array_equal(sim.acc[4:10], np.concatenate([bias] * 3))
    assert not sim.out.any()


def test_load_uop_decodes_kernels():
    kernels = {"k": [(1, 2, 3), (255, 255, 63)]}
    probe = Program(SMALL, [FINISH], kernels=kernels)
    addr, length = probe.kernel_addr("k")
    insn = Insn(Opcode.LOAD, mem_type=MemType.UOP, sram_base=10, dram_base=addr, y_size=1,
                x_size=length, x_stride=length)
    sim = FunctionalSim(SMALL)
    stats = sim.run(make_program(SMALL, [insn], kernels=kernels))
    np.testing.assert_array_equal(sim.uop[10:12], [[1, 2, 3], [255, 255, 63]])
    assert sim.uop_loaded.sum() == 2 and stats.bytes_loaded["uop"] == 8


def test_nop_writes_nothing_and_zero_rows_clear():
    sim = FunctionalSim(SMALL)
    sim.inp[...] = 3
    nop = NOP_LOAD.replace(sram_base=0, y_size=2, y_pad_0=1, x_pad_0=2)  # x_size == 0
    clear = Insn(Opcode.LOAD, mem_type=MemType.INP, sram_base=10, x_size=2, x_pad_1=1, y_pad_0=2)
    stats = sim.run(make_program(SMALL, [nop, clear]))
    assert (sim.inp[:10] == 3).all() and not sim.inp[10:16].any() and (sim.inp[16:] == 3).all()
    assert stats.insns == {"LOAD": 1, "STORE": 0, "GEMM": 0, "ALU": 0, "FINISH": 1, "NOP": 1}
    assert stats.bytes_loaded["inp"] == 0


@pytest.mark.parametrize(("stride", "rows"), [(5, 3), (0, 3), (2, 2)])
def test_strided_store(stride, rows):
    seg = Segment("C", "output", "out", 16)
    probe = Program(SMALL, [FINISH], [seg])
    store = Insn(Opcode.STORE, mem_type=MemType.OUT, sram_base=20,
                 dram_base=probe.elem_addr("C", 1), y_size=rows, x_size=3, x_stride=stride)
    program = make_program(SMALL, [store], [seg])
    sim = random_sim(SMALL, np.random.default_rng(5))
    dram = program.dram_image()
    program.write(dram, "C", np.full((16, 1, 4), 9))
    stats = sim.run(program, dram)
    expected = np.full((16, 1, 4), 9)
    for y in range(rows):  # later rows overwrite earlier ones where they overlap
        expected[1 + y * stride : 4 + y * stride] = sim.out[20 + 3 * y : 23 + 3 * y]
    np.testing.assert_array_equal(program.read(dram, "C"), expected)
    assert stats.bytes_stored["out"] == rows * 3 * 4


# -- pipeline: tokens, fetch and deadlocks -----------------------------------------------------


def test_pop_without_push_deadlocks():
    program = make_program(SMALL, [NOP_STORE, NOP_COMPUTE.replace(pop_prev=1)])
    with pytest.raises(DeadlockError) as err:
        run(program)
    assert str(err.value) == (
        "deadlock: compute waits at #1 (NOP COMPUTE) for a token on load->compute (empty)"
    )


def test_fetch_stall_deadlocks_behind_a_full_queue():
    cfg = dataclasses.replace(SMALL, insn_queue_depth=2)
    insns = [NOP_LOAD.replace(pop_next=1), NOP_LOAD, NOP_LOAD, NOP_COMPUTE.replace(push_prev=1)]
    with pytest.raises(DeadlockError) as err:
        run(make_program(cfg, insns))
    assert str(err.value) == (
        "deadlock: load waits at #0 (NOP LOAD) for a token on compute->load (empty); "
        "fetch stalled at #2: load queue full (2)"
    )
    # With a deep enough queue the same stream runs.
    stats = run(make_program(dataclasses.replace(cfg, insn_queue_depth=4), insns))[1]
    assert stats.insns["NOP"] == 4


def test_full_token_queue_deadlocks():
    pushes = [NOP_STORE.replace(push_prev=1)] * (SMALL.dep_queue_depth + 1)
    with pytest.raises(DeadlockError) as err:
        run(make_program(SMALL, pushes))
    assert str(err.value) == (
        "deadlock: store waits at #4 (NOP STORE) for room on store->compute (full, 4 tokens)"
    )
    drained = [NOP_COMPUTE.replace(pop_next=1)] * len(pushes)
    assert run(make_program(SMALL, pushes + drained))[1].insns["NOP"] == 10


def test_tokens_order_stages():
    """A STORE that waits for compute's token sees the ALU result, not the old OUT."""
    seg = Segment("C", "output", "out", 1)
    kernels = {"k": [(0, 0, 0)]}
    probe = Program(SMALL, [FINISH], [seg], kernels)
    store = Insn(Opcode.STORE, mem_type=MemType.OUT, dram_base=probe.elem_addr("C"), y_size=1,
                 x_size=1, x_stride=1, pop_prev=1)
    addr, _ = probe.kernel_addr("k")
    load_uop = Insn(Opcode.LOAD, mem_type=MemType.UOP, dram_base=addr, y_size=1, x_size=1,
                    x_stride=1)
    mov = Insn(Opcode.ALU, uop_bgn=0, uop_end=1, iter_out=1, iter_in=1, alu_op=AluOp.MOV,
               use_imm=1, imm=42, push_next=1)
    program = make_program(SMALL, [store, load_uop, mov], [seg], kernels)
    dram, _ = run(program)
    assert (program.read(dram, "C") == 42).all()


# -- errors -------------------------------------------------------------------------------------


def test_gemm_index_out_of_range_names_the_execution():
    sim = FunctionalSim(SMALL)
    sim.uop_loaded[:2] = True
    set_uops(sim, [(0, 0, 0), (100, 0, 0)])
    program = make_program(SMALL, [NOP_COMPUTE, Insn(Opcode.GEMM, uop_bgn=0, uop_end=2,
                                                     iter_out=3, iter_in=2, dst_factor_out=100)])
    with pytest.raises(SimError, match=r"^instruction 1 \(GEMM\): ACC index 300 out of range "
                                       r"\[0, 256\) \(i=2, j=0, uop 1\)$"):
        sim.run(program)


@pytest.mark.parametrize(("field", "buffer", "depth"), [("src", "INP", 256), ("wgt", "WGT", 64)])
def test_gemm_operand_out_of_range(field, buffer, depth):
    sim = FunctionalSim(SMALL)
    sim.uop_loaded[0] = True
    gemm = Insn(Opcode.GEMM, uop_bgn=0, uop_end=1, iter_out=1, iter_in=depth + 1,
                **{f"{field}_factor_in": 1})
    with pytest.raises(SimError, match=rf"instruction 0 \(GEMM\): {buffer} index {depth} out of "
                                       rf"range \[0, {depth}\) \(i=0, j={depth}, uop 0\)"):
        sim.run(make_program(SMALL, [gemm]))


def test_alu_src_out_of_range_and_unloaded_uops():
    sim = FunctionalSim(SMALL)
    alu = Insn(Opcode.ALU, uop_bgn=0, uop_end=1, iter_out=2, iter_in=1, src_factor_out=255,
               alu_op=AluOp.ADD)
    with pytest.raises(SimError, match=r"instruction 0 \(ALU ADD\): uop 0 was never loaded"):
        sim.run(make_program(SMALL, [alu]))
    sim.uop_loaded[0] = True
    set_uops(sim, [(0, 1, 0)])
    with pytest.raises(SimError, match=r"ACC index 256 out of range \[0, 256\) \(i=1, j=0"):
        sim.run(make_program(SMALL, [alu]))


def test_load_and_store_out_of_range():
    load = Insn(Opcode.LOAD, mem_type=MemType.INP, sram_base=250, y_size=2, x_size=5, x_stride=5)
    with pytest.raises(SimError, match=r"^instruction 0 \(LOAD INP\): INP elements \[250, 260\) "
                                       r"out of range \[0, 256\)$"):
        run(make_program(SMALL, [load.replace(dram_base=0)]))
    program = make_program(SMALL, [load.replace(sram_base=0, dram_base=1000)])
    with pytest.raises(SimError, match=rf"instruction 0 \(LOAD INP\): DRAM bytes \[4000, 4040\) "
                                       rf"out of range \[0, {program.dram_size}\)"):
        run(program)
    store = Insn(Opcode.STORE, mem_type=MemType.OUT, dram_base=10**6, y_size=1, x_size=1)
    with pytest.raises(SimError, match=r"instruction 1 \(STORE OUT\): DRAM bytes \[4000000, "):
        run(make_program(SMALL, [NOP_LOAD, store]))


def test_config_mismatch():
    program = make_program(load_config("default"), [])
    with pytest.raises(SimError, match=f"built for config {program.config.name}.*{SMALL.name}"):
        FunctionalSim(SMALL).run(program)


# -- whole programs -----------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    rows=st.integers(1, 40),
    k_blocks=st.integers(1, 80),
    n_blocks=st.integers(1, 20),
    threads=st.sampled_from([1, 2]),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_matmul_sizes_match_numpy(rows, k_blocks, n_blocks, threads, seed):
    sample = matmul_program(SMALL, rows, 4 * k_blocks, 4 * n_blocks, virtual_threads=threads,
                            shift=seed % 9, relu=seed % 2 == 0, bias=seed % 3 > 0, seed=seed)
    dram, stats = run(sample.program, sample.dram())
    assert np.array_equal(sample.output(dram), sample.expected()), f"seed {seed}"
    assert stats.macs == rows * 16 * k_blocks * n_blocks
