"""Lowering of QCONV to accelerator programs: bit-exact against a numpy reference of QCONV."""

import dataclasses
import random

import numpy as np
import pytest

from compiler.ir import CompileError, Node, Op
from compiler.lower import from_elements, lower_conv, to_elements
from compiler.qreference import qconv
from compiler.schedule import ConvSchedule
from isa import AluOp, MemType, Opcode, load_config
from isa.packing import wrap
from sim.functional import FunctionalSim

SMALL = load_config("small")


def qconv_reference(x, attrs, cfg):
    """QCONV by the project's integer reference."""
    node = Node("conv", Op.QCONV, ["x"], ["y"], attrs)
    return wrap(qconv(node, [x], cfg.acc_bits), cfg.out_bits)


def random_qconv(rng, *, c_in, c_out, kernel, stride, pad, uniform, relu):
    lim = 1 << 7
    m = rng.integers(1, 1 << 14, size=c_out)
    return {
        "weights": rng.integers(-lim, lim, size=(c_out, c_in, kernel, kernel)),
        "bias": rng.integers(-(1 << 12), 1 << 12, size=c_out),
        "strides": (stride, stride),
        "pads": (pad, pad, pad, pad),
        "pre_shift": int(rng.integers(0, 6)),
        "multiplier": np.full(c_out, m[0]) if uniform else m,
        "post_shift": int(rng.integers(10, 16)),
        "clip": (0, 127) if relu else (-128, 127),
    }


def run_lowered(cfg, x, attrs, schedule=None):
    lowered = lower_conv(cfg, x.shape, attrs, schedule)
    program = lowered.program
    dram = program.dram_image()
    program.write(dram, "x", lowered.pack_input(x))
    stats = FunctionalSim(cfg).run(program, dram)
    return lowered.unpack_output(program.read(dram, "y")), lowered, stats


def assert_random_schedules_agree(x, attrs, pick: random.Random, most):
    """Schedules of up to `most` (rows, cols, cout, cin), one or two threads, drawn from `pick`:
    each either does not fit SMALL or gives the reference's output."""
    expected = qconv_reference(x, attrs, SMALL)
    for _ in range(6):
        schedule = ConvSchedule(*(pick.randint(1, m) for m in most), pick.choice([1, 2]))
        try:
            got, _, _ = run_lowered(SMALL, x, attrs, schedule)
        except CompileError as exc:
            assert "does not fit" in str(exc)
            continue
        np.testing.assert_array_equal(got, expected, err_msg=str(schedule))


CASES = [
    # n, c_in, c_out, h, w, kernel, stride, pad, uniform, relu, schedule
    (1, 3, 6, 7, 9, 3, 1, 1, False, True, None),
    (2, 5, 4, 6, 6, 3, 2, 1, True, False, None),
    (1, 4, 8, 8, 8, 1, 1, 0, False, True, None),
    (1, 2, 3, 9, 7, 5, 1, 2, True, True, None),
    (1, 6, 5, 9, 9, 3, 2, 0, False, False, None),
    (1, 8, 8, 8, 8, 3, 1, 1, False, True, ConvSchedule(rows=3, cols=5, cout=1, cin=1)),
    (2, 5, 7, 7, 8, 3, 1, 3, False, True, ConvSchedule(rows=2, cols=3, cout=2, cin=1, threads=1)),
    (1, 3, 4, 10, 10, 7, 2, 3, True, True, None),
]


@pytest.mark.parametrize("case", CASES)
def test_conv_matches_reference(case):
    n, c_in, c_out, h, w, kernel, stride, pad, uniform, relu, schedule = case
    rng = np.random.default_rng(CASES.index(case))
    attrs = random_qconv(rng, c_in=c_in, c_out=c_out, kernel=kernel, stride=stride, pad=pad,
                         uniform=uniform, relu=relu)
    x = rng.integers(-128, 128, size=(n, c_in, h, w))
    got, lowered, stats = run_lowered(SMALL, x, attrs, schedule)
    expected = qconv_reference(x, attrs, SMALL)
    np.testing.assert_array_equal(got, expected)
    assert stats.macs >= lowered.macs  # padded channels count as MACs on the core
    assert np.any(expected != 0)


@pytest.mark.parametrize("preset", ["default", "int4", "nonsquare"])
def test_conv_on_other_configs(preset):
    cfg = load_config(preset)
    rng = np.random.default_rng(7)
    attrs = random_qconv(rng, c_in=20, c_out=18, kernel=3, stride=1, pad=1, uniform=False,
                         relu=True)
    lim = 1 << (cfg.wgt_bits - 1)
    attrs["weights"] = rng.integers(-lim, lim, size=attrs["weights"].shape)
    attrs["clip"] = (0, (1 << (cfg.out_bits - 1)) - 1)
    x = rng.integers(-(1 << (cfg.inp_bits - 1)), 1 << (cfg.inp_bits - 1), size=(2, 20, 6, 5))
    got, _, _ = run_lowered(cfg, x, attrs)
    np.testing.assert_array_equal(got, qconv_reference(x, attrs, cfg))


def test_random_schedules_agree():
    rng = np.random.default_rng(11)
    pick = random.Random(11)
    attrs = random_qconv(rng, c_in=9, c_out=10, kernel=3, stride=1, pad=1, uniform=False,
                         relu=True)
    x = rng.integers(-128, 128, size=(1, 9, 7, 6))
    assert_random_schedules_agree(x, attrs, pick, (7, 6, 3, 3))


def test_kernels_stream_when_they_do_not_fit_the_uop_buffer():
    rng = np.random.default_rng(3)
    attrs = random_qconv(rng, c_in=8, c_out=8, kernel=5, stride=1, pad=2, uniform=False,
                         relu=True)
    x = rng.integers(-128, 128, size=(1, 8, 9, 7))
    cfg = dataclasses.replace(SMALL, uop_depth=64)
    schedule = ConvSchedule(rows=4, cols=3, cout=1, cin=1, threads=2)
    got, lowered, stats = run_lowered(cfg, x, attrs, schedule)
    np.testing.assert_array_equal(got, qconv_reference(x, attrs, cfg))
    uop_words = sum(len(k) for k in lowered.program.kernels.values())
    assert uop_words > cfg.uop_depth  # so kernels were reloaded before use
    assert stats.bytes_loaded["uop"] > 4 * uop_words


def alu_insns(lowered):
    """The ALU instructions of a lowered conv and the lengths of their uop kernels."""
    return [(insn, insn.uop_end - insn.uop_bgn) for insn in lowered.program.insns
            if insn.op == Opcode.ALU]


def test_acc_source_alus_walk_the_pixels_of_one_source_row():
    rng = np.random.default_rng(5)
    attrs = random_qconv(rng, c_in=4, c_out=12, kernel=3, stride=1, pad=1, uniform=False,
                         relu=True)
    x = rng.integers(-128, 128, size=(1, 4, 6, 7))
    schedule = ConvSchedule(rows=2, cols=7, cout=3, cin=1)
    got, lowered, _ = run_lowered(SMALL, x, attrs, schedule)
    np.testing.assert_array_equal(got, qconv_reference(x, attrs, SMALL))
    insns = alu_insns(lowered)
    assert sum(not insn.use_imm for insn, _ in insns) == 2 * 3  # MOV bias and MULR, per tile
    for insn, length in insns:
        # consecutive uops of a block share its source row: one ACC read per block
        assert length == 1
        assert (insn.iter_out, insn.iter_in, insn.dst_factor_out, insn.dst_factor_in) == \
            (3, 14, 14, 1)
        assert (insn.src_factor_out, insn.src_factor_in) == (1, 0)


LIMIT = 1 << 31


@pytest.mark.parametrize(("pre_shift", "clip", "uniform", "ops"), [
    (0, (0, 127), False, [(AluOp.MULR, 0, 13), (AluOp.CLIP, 1, 0x7F00)]),
    (0, (-128, 127), True, [(AluOp.MULR, 0, 13), (AluOp.CLIP, 1, 0x7F80)]),
    (3, (0, 127), False, [(AluOp.RSHR, 1, 3), (AluOp.MULR, 0, 13), (AluOp.CLIP, 1, 0x7F00)]),
    (0, (-1000, 1000), False, [(AluOp.MULR, 0, 13), (AluOp.MAX, 1, -1000),
                               (AluOp.MIN, 1, 1000)]),
    (0, (0, 1000), False, [(AluOp.MULR, 0, 13), (AluOp.MAX, 1, 0), (AluOp.MIN, 1, 1000)]),
    (0, (-LIMIT, LIMIT - 1), False, [(AluOp.MULR, 0, 13)]),
])
def test_epilogue_is_mov_mulr_and_clip(pre_shift, clip, uniform, ops):
    rng = np.random.default_rng(9)
    attrs = random_qconv(rng, c_in=3, c_out=6, kernel=3, stride=1, pad=1, uniform=uniform,
                         relu=True)
    attrs |= {"pre_shift": pre_shift, "post_shift": 13, "clip": clip}
    x = rng.integers(-128, 128, size=(1, 3, 5, 4))
    schedule = ConvSchedule(rows=5, cols=4, cout=2, cin=1)
    got, lowered, _ = run_lowered(SMALL, x, attrs, schedule)
    want = qconv_reference(x, attrs, SMALL)
    np.testing.assert_array_equal(got, want)
    insns = [insn for insn, _ in alu_insns(lowered)]
    assert [(insn.alu_op, insn.use_imm) for insn in insns[:1]] == [(AluOp.MOV, 0)]
    assert [(insn.alu_op, insn.use_imm, insn.imm) for insn in insns[1:]] == ops
    assert [insn.push_next for insn in insns] == [0] * len(ops) + [1]  # the last tells store
    # the multiplier rows are loaded with the bias rows, uniform or not
    loads = [i for i in lowered.program.insns if i.op == Opcode.LOAD and i.mem_type == MemType.ACC]
    assert len(loads) == 2


def test_epilogue_loops_over_rows_and_columns_beyond_the_loop_fields():
    # ACC deep enough for a tile of more pixels than iter_in can count (UOP and WGT shrunk to
    # leave the encoding room for the wide ACC indices).
    cfg = dataclasses.replace(SMALL, acc_depth=1 << 15, inp_depth=1 << 15, uop_depth=16,
                              wgt_depth=4)
    rng = np.random.default_rng(6)
    attrs = random_qconv(rng, c_in=3, c_out=4, kernel=1, stride=1, pad=0, uniform=False,
                         relu=True)
    x = rng.integers(-128, 128, size=(1, 3, 130, 130))
    schedule = ConvSchedule(rows=130, cols=130, cout=1, cin=1, threads=1)
    got, lowered, _ = run_lowered(cfg, x, attrs, schedule)
    np.testing.assert_array_equal(got, qconv_reference(x, attrs, cfg))
    for insn, _ in alu_insns(lowered):
        assert (insn.iter_out, insn.iter_in, insn.dst_factor_out) == (130, 130, 130)


@pytest.mark.parametrize(("rows", "cout", "acc_loads"), [
    (2, 2, 4),  # four tiles of one layout: each ACC half loads bias and multipliers once
    (3, 2, 6),  # the last tile is shorter, so its rows sit elsewhere: loaded again
    (2, 1, 4),  # output blocks alternate between tiles, so each half keeps one block's rows
])
def test_bias_and_multiplier_rows_stay_in_their_acc_half(rows, cout, acc_loads):
    rng = np.random.default_rng(8)
    attrs = random_qconv(rng, c_in=4, c_out=8, kernel=3, stride=1, pad=1, uniform=False,
                         relu=False)
    x = rng.integers(-128, 128, size=(1, 4, 8, 6))
    schedule = ConvSchedule(rows=rows, cols=6, cout=cout, cin=1, threads=2)
    got, lowered, _ = run_lowered(SMALL, x, attrs, schedule)
    np.testing.assert_array_equal(got, qconv_reference(x, attrs, SMALL))
    loads = [i for i in lowered.program.insns if i.op == Opcode.LOAD and i.mem_type == MemType.ACC]
    assert len(loads) == acc_loads


def test_element_packing_round_trip():
    cfg = load_config("nonsquare")
    x = np.arange(3 * 11 * 2 * 3).reshape(3, 11, 2, 3) % 100
    elements = to_elements(x, cfg, "inp")
    assert elements.shape == (2 * 2 * 2 * 3, 2, 8)
    np.testing.assert_array_equal(from_elements(elements, cfg, "inp", x.shape), x)


def test_padding_beyond_the_isa_is_rejected():
    rng = np.random.default_rng(0)
    attrs = random_qconv(rng, c_in=1, c_out=1, kernel=3, stride=1, pad=16, uniform=True,
                         relu=True)
    with pytest.raises(CompileError, match="exceeds 15"):
        lower_conv(SMALL, (1, 1, 4, 4), attrs)


# -- grouped and depthwise convolutions ----------------------------------------------------------


def grouped_qconv(rng, *, c_in, c_out, groups, kernel, stride, pad):
    """A random QCONV of `groups` groups (weights (c_out, c_in / groups, k, k))."""
    attrs = random_qconv(rng, c_in=c_in // groups, c_out=c_out, kernel=kernel, stride=stride,
                         pad=pad, uniform=False, relu=False)
    return attrs | {"groups": groups}


def dense_blocks(cfg, c_in, c_out, groups):
    """(output block, input block) pairs of the block-diagonal weights with a non-zero entry."""
    mask = np.zeros((c_out, c_in), dtype=bool)
    for g in range(groups):
        mask[g * c_out // groups:(g + 1) * c_out // groups,
             g * c_in // groups:(g + 1) * c_in // groups] = True
    bo, bi = cfg.block_out, cfg.block_in
    return {(o // bo, i // bi) for o, i in zip(*np.nonzero(mask), strict=True)}


GROUPED = [
    # c_in, c_out, groups, h, w, kernel, stride, pad
    (5, 5, 5, 7, 6, 3, 1, 1),
    (24, 24, 24, 9, 8, 3, 2, 1),
    (40, 40, 40, 6, 7, 5, 1, 2),
    (24, 24, 24, 8, 8, 5, 2, 0),
    (24, 12, 4, 7, 7, 3, 1, 1),  # grouped, 6 inputs to 3 outputs per group
    (12, 40, 4, 5, 6, 1, 1, 0),  # 3 inputs to 10 outputs per group
    (40, 80, 40, 6, 5, 3, 2, 1),  # depthwise with a multiplier of 2
]


@pytest.mark.parametrize("preset", ["small", "nonsquare"])
@pytest.mark.parametrize("case", GROUPED)
def test_grouped_conv_runs_only_its_nonzero_weight_blocks(preset, case):
    """Bit-exact against the integer reference; the GEMM runs one uop per non-zero (output
    block, input block, tap) per output pixel and loads only those weight blocks."""
    cfg = load_config(preset)
    c_in, c_out, groups, h, w, kernel, stride, pad = case
    rng = np.random.default_rng(GROUPED.index(case))
    attrs = grouped_qconv(rng, c_in=c_in, c_out=c_out, groups=groups, kernel=kernel,
                          stride=stride, pad=pad)
    x = rng.integers(-128, 128, size=(2, c_in, h, w))
    got, lowered, stats = run_lowered(cfg, x, attrs)
    want = qconv_reference(x, attrs, cfg)
    np.testing.assert_array_equal(got, want)
    assert np.any(want != 0)
    s = lowered.shape
    pairs = dense_blocks(cfg, c_in, c_out, groups)
    pixels = s.batch_blocks * s.out_height * s.out_width
    assert stats.gemm_uops == pixels * len(pairs) * kernel * kernel
    if groups == c_in == c_out:  # depthwise: a dense lowering would run every input block
        assert stats.gemm_uops * min(s.cin_blocks, s.cout_blocks) == \
            pixels * s.cin_blocks * s.cout_blocks * kernel * kernel
    assert lowered.program.segment("w").count == len(pairs) * kernel * kernel
    assert lowered.macs == 2 * c_out * (c_in // groups) * kernel ** 2 * s.out_height * s.out_width


def test_depthwise_costs_one_block_per_output_block():
    """A 3x3 depthwise conv of 64 channels on `default` (16x16): 4 * 9 uops per output pixel,
    not 4 * 4 * 9, and every weight block is one diagonal."""
    cfg = load_config("default")
    rng = np.random.default_rng(12)
    attrs = grouped_qconv(rng, c_in=64, c_out=64, groups=64, kernel=3, stride=1, pad=1)
    x = rng.integers(-128, 128, size=(1, 64, 10, 10))
    got, lowered, stats = run_lowered(cfg, x, attrs)
    np.testing.assert_array_equal(got, qconv_reference(x, attrs, cfg))
    assert stats.gemm_uops == 100 * 4 * 9
    assert lowered.shape.block_inputs == ((0, 1), (1, 2), (2, 3), (3, 4))


@pytest.mark.parametrize("seed", range(4))
def test_grouped_conv_random_schedules_agree(seed):
    rng = np.random.default_rng(20 + seed)
    pick = random.Random(seed)
    attrs = grouped_qconv(rng, c_in=20, c_out=20, groups=[20, 5, 10, 2][seed], kernel=3,
                          stride=1 + seed % 2, pad=1)
    x = rng.integers(-128, 128, size=(1, 20, 7, 6))
    assert_random_schedules_agree(x, attrs, pick, (4, 4, 5, 5))


@pytest.mark.parametrize("preset", ["small", "nonsquare"])
@pytest.mark.parametrize(("channels", "kernel", "stride"), [(5, 3, 1), (24, 2, 2), (40, 7, 1)])
def test_pooling_conv_loads_each_distinct_weight_block_once(preset, channels, kernel, stride):
    """A depthwise conv of constant weights (an average pool) stores the distinct diagonal
    blocks once (a partial last block, or block_in < block_out, adds one) and a step loads
    only the distinct blocks it uses; the result stays bit-exact."""
    cfg = load_config(preset)
    rng = np.random.default_rng(channels)
    attrs = {"weights": np.full((channels, 1, kernel, kernel), 127), "groups": channels,
             "bias": rng.integers(-4096, 4096, channels), "strides": (stride, stride),
             "pads": (0, 0, 0, 0), "pre_shift": 0, "multiplier": np.full(channels, 300),
             "post_shift": 14, "clip": (-128, 127)}
    x = rng.integers(-128, 128, size=(2, channels, 7, 7))
    got, lowered, stats = run_lowered(cfg, x, attrs)
    np.testing.assert_array_equal(got, qconv_reference(x, attrs, cfg))
    ratio = cfg.block_out // cfg.block_in
    partial = channels % cfg.block_out != 0
    assert lowered.program.segment("w").count <= ratio + partial
    loads = [i for i in lowered.program.insns if i.op == Opcode.LOAD and i.mem_type == MemType.WGT]
    gemms = [i for i in lowered.program.insns if i.op == Opcode.GEMM]
    assert sum(i.x_size for i in loads) <= len(gemms) * (ratio + partial)
    assert stats.bytes_loaded["wgt"] == sum(i.x_size for i in loads) * cfg.elem_bytes("wgt")
