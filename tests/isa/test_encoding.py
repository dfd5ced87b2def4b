"""Instruction and micro-op encoding: golden words, round trips, range and legality checks."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isa import AluOp, Insn, IsaError, MemType, Opcode, Uop, decode, encode, load_config
from isa.formats import INSN_BITS
from isa.instructions import (
    Stage,
    TokenQueue,
    decode_stream,
    decode_uop,
    encode_stream,
    encode_uop,
    pops,
    pushes,
    stage_of,
)
from isa.semantics import mulr_max_shift

DEFAULT = load_config("default")
PRESETS = ["small", "default", "int4", "nonsquare"]

# Golden words for `default`, written out from docs/isa.md's bit tables (not from the encoder):
# LOAD: 1<<6 | INP(2)<<7 | 5<<10 | 0x1000<<23 | 3<<55 | 4<<71 | 16<<87 | 1<<111
GOLDEN = [
    (
        Insn(Opcode.LOAD, push_next=1, mem_type=MemType.INP, sram_base=5, dram_base=0x1000,
             y_size=3, x_size=4, x_stride=16, x_pad_0=1),
        0x8000080002000180000800001540,
    ),
    (
        Insn(Opcode.GEMM, pop_prev=1, push_prev=1, uop_bgn=4, uop_end=6, iter_out=3, iter_in=2,
             dst_factor_out=32, dst_factor_in=1, src_factor_out=8, src_factor_in=0,
             wgt_factor_out=4, wgt_factor_in=1, reset=1),
        0x40101000008002080002000C0060022A,
    ),
    (
        Insn(Opcode.ALU, push_next=1, uop_bgn=0, uop_end=1, iter_out=16, iter_in=1,
             dst_factor_out=1, src_factor_out=1, alu_op=AluOp.SHR, use_imm=1, imm=-3),
        0x7FFECC00001000004001004000100044,
    ),
    # MULR: alu_op 7 at [109:106], use_imm 0, the shift 47 (acc_bits + 15) in imm [126:111]
    (
        Insn(Opcode.ALU, pop_prev=1, uop_bgn=0, uop_end=1, iter_out=4, iter_in=8,
             dst_factor_out=8, dst_factor_in=1, src_factor_out=1, alu_op=AluOp.MULR, imm=47),
        0x179C0000100202000800100010000C,
    ),
    # CLIP to [0, 127]: imm = hi << 8 | lo & 0xFF = 0x7F00
    (
        Insn(Opcode.ALU, push_next=1, uop_bgn=0, uop_end=1, iter_out=16, iter_in=1,
             dst_factor_out=1, src_factor_out=1, alu_op=AluOp.CLIP, use_imm=1, imm=0x7F00),
        0x3F806000001000004001004000100044,
    ),
    (Insn(Opcode.FINISH, pop_next=1), 0x13),
]


@pytest.mark.parametrize(("insn", "word"), GOLDEN, ids=lambda x: getattr(x, "op", x))
def test_golden_words(insn, word):
    assert encode(insn, DEFAULT) == word
    assert decode(word, DEFAULT) == insn


def test_golden_uop():
    assert encode_uop(Uop(7, 300, 513), DEFAULT) == 0x80496007
    assert decode_uop(0x80496007, DEFAULT) == Uop(7, 300, 513)


def test_stream_is_little_endian_words():
    data = encode_stream([g for g, _ in GOLDEN], DEFAULT)
    assert len(data) == 16 * len(GOLDEN)
    assert int.from_bytes(data[:16], "little") == GOLDEN[0][1]
    assert decode_stream(data, DEFAULT) == [g for g, _ in GOLDEN]
    with pytest.raises(IsaError, match="multiple of 16"):
        decode_stream(data[:-1], DEFAULT)


def _legal_insns(cfg):
    """A strategy of legal instructions for a config, every field within its range."""

    def fields_for(op, fixed):
        fmt = cfg.insn_formats[op]
        free = {
            f.name: st.integers(f.min, f.max)
            for f in fmt.fields
            if f.name != "opcode" and f.name not in fixed and not f.name.startswith(("pop", "push"))
        }
        return st.fixed_dictionaries({**free, **{k: st.just(v) for k, v in fixed.items()}})

    def with_flags(op, values, stage):
        allowed = {
            Stage.LOAD: ("pop_next", "push_next"),
            Stage.COMPUTE: ("pop_prev", "pop_next", "push_prev", "push_next"),
            Stage.STORE: ("pop_prev", "push_prev"),
        }[stage]
        return st.fixed_dictionaries({f: st.integers(0, 1) for f in allowed}).map(
            lambda flags: Insn(op, **values, **flags)
        )

    no_pad = {"y_pad_0": 0, "y_pad_1": 0, "x_pad_0": 0, "x_pad_1": 0}
    loads = st.sampled_from([MemType.INP, MemType.WGT, MemType.ACC, MemType.UOP]).flatmap(
        lambda m: fields_for(Opcode.LOAD, {"mem_type": m} | (no_pad if m == MemType.UOP else {}))
        .flatmap(lambda v: with_flags(Opcode.LOAD, v, stage_of(Insn(Opcode.LOAD, **v))))
    )
    stores = fields_for(Opcode.STORE, {"mem_type": MemType.OUT} | no_pad).flatmap(
        lambda v: with_flags(Opcode.STORE, v, Stage.STORE)
    )
    uop_end = st.integers(0, cfg.uop_depth)

    def loop(op, extra):
        return st.tuples(uop_end, uop_end).flatmap(
            lambda be: fields_for(op, {"uop_bgn": min(be), "uop_end": max(be)} | extra)
        ).flatmap(lambda v: with_flags(op, v, Stage.COMPUTE))

    def alu_fields(op, use_imm):
        if op == AluOp.MULR:
            return st.integers(0, mulr_max_shift(cfg.acc_bits)).map(
                lambda n: {"alu_op": op, "use_imm": 0, "imm": n})
        use_imm = 1 if op == AluOp.CLIP else use_imm
        return st.just({"alu_op": op, "use_imm": use_imm} | ({} if use_imm else {"imm": 0}))

    alus = st.tuples(st.sampled_from(list(AluOp)), st.integers(0, 1)).flatmap(
        lambda a: alu_fields(*a)
    ).flatmap(lambda extra: loop(Opcode.ALU, extra))
    finish = with_flags(Opcode.FINISH, {}, Stage.COMPUTE)
    return st.one_of(loads, stores, loop(Opcode.GEMM, {}), alus, finish)


@pytest.mark.parametrize("preset", PRESETS)
def test_encode_decode_round_trip(preset):
    cfg = load_config(preset)

    @settings(max_examples=300, derandomize=True, deadline=None)
    @given(_legal_insns(cfg))
    def check(insn):
        word = encode(insn, cfg)
        assert 0 <= word < 1 << INSN_BITS
        assert decode(word, cfg) == insn

    check()


@pytest.mark.parametrize("preset", PRESETS)
def test_uop_round_trip(preset):
    cfg = load_config(preset)
    fmt = cfg.uop_format

    @settings(max_examples=200, derandomize=True, deadline=None)
    @given(*(st.integers(0, f.max) for f in fmt.fields))
    def check(dst, src, wgt):
        assert decode_uop(encode_uop(Uop(dst, src, wgt), cfg), cfg) == Uop(dst, src, wgt)

    check()


@pytest.mark.parametrize(
    ("insn", "message"),
    [
        (Insn(Opcode.LOAD, mem_type=MemType.INP, y_size=1 << 16), "y_size=65536 is out of range"),
        (Insn(Opcode.LOAD, mem_type=MemType.INP, sram_base=1 << 13), "sram_base=8192"),
        (Insn(Opcode.LOAD, mem_type=MemType.INP, x_pad_0=16), "x_pad_0=16"),
        (Insn(Opcode.ALU, alu_op=AluOp.ADD, use_imm=1, imm=1 << 15), "imm=32768"),
        (Insn(Opcode.ALU, alu_op=AluOp.ADD, use_imm=1, imm=-(1 << 15) - 1), "imm=-32769"),
        (Insn(Opcode.GEMM, uop_end=3, dst_factor_in=2048), "dst_factor_in=2048"),
        (Insn(Opcode.GEMM, iter_out=-1), "iter_out=-1"),
    ],
)
def test_out_of_range_fields_are_rejected(insn, message):
    with pytest.raises(IsaError, match=message):
        encode(insn, DEFAULT)


@pytest.mark.parametrize(
    ("insn", "message"),
    [
        (Insn(Opcode.STORE, mem_type=MemType.ACC), "STORE writes only OUT"),
        (Insn(Opcode.STORE, mem_type=MemType.OUT, y_pad_0=1), "STORE cannot pad"),
        (Insn(Opcode.LOAD, mem_type=MemType.OUT), "LOAD cannot write OUT"),
        (Insn(Opcode.LOAD, mem_type=MemType.UOP, x_pad_1=2), "LOAD UOP cannot pad"),
        (Insn(Opcode.LOAD, mem_type=7), "memory type 7 does not exist"),
        (Insn(Opcode.LOAD, mem_type=MemType.INP, pop_prev=1), "clear pop_prev"),
        (Insn(Opcode.STORE, mem_type=MemType.OUT, push_next=1), "clear push_next"),
        (Insn(Opcode.GEMM, uop_bgn=4, uop_end=3), "uop_end 3 < uop_bgn 4"),
        (Insn(Opcode.GEMM, uop_end=8193), "exceeds the uop buffer depth"),
        (Insn(Opcode.ALU, alu_op=9), "ALU op 9 does not exist"),
        (Insn(Opcode.ALU, alu_op=15), "ALU op 15 does not exist; ops are .*MULR=7, CLIP=8"),
        (Insn(Opcode.ALU, alu_op=AluOp.MULR, use_imm=1, imm=3), "MULR .* set use_imm to 0"),
        (Insn(Opcode.ALU, alu_op=AluOp.MULR, imm=48), r"MULR shift imm=48 is outside \[0, 47\]"),
        (Insn(Opcode.ALU, alu_op=AluOp.MULR, imm=-1), r"MULR shift imm=-1 is outside"),
        (Insn(Opcode.ALU, alu_op=AluOp.CLIP, imm=0x7F00), "CLIP .* set use_imm to 1"),
        (Insn(Opcode.ALU, alu_op=AluOp.ADD, imm=5), "imm=5 is ignored when use_imm=0"),
    ],
)
def test_illegal_instructions_are_rejected(insn, message):
    with pytest.raises(IsaError, match=message):
        encode(insn, DEFAULT)


def test_decode_rejects_unknown_opcode_and_stray_bits():
    with pytest.raises(IsaError, match="opcode 5 does not exist"):
        decode(5, DEFAULT)
    with pytest.raises(IsaError, match="bits set above bit 6"):
        decode(3 | 1 << 100, DEFAULT)


def test_unknown_field_names_are_rejected():
    with pytest.raises(IsaError, match="GEMM has no field imm"):
        Insn(Opcode.GEMM, imm=1)


def test_routing_and_tokens_follow_vta():
    load_inp = Insn(Opcode.LOAD, mem_type=MemType.INP, pop_next=1, push_next=1)
    load_acc = Insn(Opcode.LOAD, mem_type=MemType.ACC, pop_prev=1, push_next=1)
    store = Insn(Opcode.STORE, mem_type=MemType.OUT, pop_prev=1, push_prev=1)
    assert stage_of(load_inp) == Stage.LOAD
    assert stage_of(Insn(Opcode.LOAD, mem_type=MemType.WGT)) == Stage.LOAD
    assert stage_of(load_acc) == Stage.COMPUTE
    assert stage_of(Insn(Opcode.LOAD, mem_type=MemType.UOP)) == Stage.COMPUTE
    assert stage_of(store) == Stage.STORE
    assert stage_of(Insn(Opcode.FINISH)) == Stage.COMPUTE
    assert pops(load_inp) == [TokenQueue.G2L] and pushes(load_inp) == [TokenQueue.L2G]
    assert pops(load_acc) == [TokenQueue.L2G] and pushes(load_acc) == [TokenQueue.G2S]
    assert pops(store) == [TokenQueue.G2S] and pushes(store) == [TokenQueue.S2G]
