"""Assembler and disassembler: round trips, exact encodings, canonical text and every error."""

import dataclasses
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isa import AluOp, AsmError, HwConfig, Insn, IsaError, MemType, Opcode, Segment, Uop
from isa.asm import SEGMENT_KINDS, SEGMENT_MEMS, assemble, assemble_file, disassemble
from isa.config import load_config
from isa.formats import DEP_FLAGS
from isa.instructions import check
from isa.packing import pack_elements
from isa.program import UOP_SEGMENT, Layout, Program
from isa.semantics import mulr_max_shift

SMALL = load_config("small")
CONFIGS = {name: load_config(name) for name in ("small", "default", "int4", "nonsquare")} | {
    "custom": HwConfig(
        batch=2, block_in=8, block_out=4, inp_bits=4, wgt_bits=2, acc_bits=24, out_bits=4,
        uop_depth=512, inp_depth=512, wgt_depth=128, acc_depth=512, axi_data_bits=64,
        insn_queue_depth=32, dep_queue_depth=4,
    )
}
NOPS = (
    Insn(Opcode.LOAD, mem_type=MemType.INP),
    Insn(Opcode.LOAD, mem_type=MemType.UOP),
    Insn(Opcode.STORE, mem_type=MemType.OUT),
)

# -- random legal programs ---------------------------------------------------------------------

names = st.from_regex(r"[A-Za-z_][\w.\-]{0,5}", fullmatch=True).filter(lambda n: n != UOP_SEGMENT)


def _in_range(draw, cfg, op, name):
    f = cfg.insn_formats[op].field(name)
    return draw(st.integers(f.min, f.max))


def _random_fields(draw, cfg, op):
    return {
        f.name: _in_range(draw, cfg, op, f.name)
        for f in cfg.insn_formats[op].fields
        if f.name != "opcode" and f.name not in DEP_FLAGS
    }


def _legal(insn, cfg):
    try:
        check(insn, cfg)
    except IsaError:
        return False
    return True


def _with_flags(draw, insn, cfg):
    """Set a random subset of the dependency flags the instruction's stage allows."""
    flags = {f: 1 for f in DEP_FLAGS if draw(st.booleans()) and _legal(insn.replace(**{f: 1}), cfg)}
    return insn.replace(**flags)


@st.composite
def transfers(draw, cfg, layout):
    op = draw(st.sampled_from([Opcode.LOAD, Opcode.STORE]))
    fields = _random_fields(draw, cfg, op)
    loads = [MemType.UOP, MemType.WGT, MemType.INP, MemType.ACC]
    mem = MemType.OUT if op == Opcode.STORE else draw(st.sampled_from(loads))
    fields["mem_type"] = mem
    if mem in (MemType.OUT, MemType.UOP):
        fields |= {"y_pad_0": 0, "y_pad_1": 0, "x_pad_0": 0, "x_pad_1": 0}
    inside = [s for s in layout.segments.values() if s.mem == mem.kind and s.count]
    if inside and draw(st.booleans()):
        segment = draw(st.sampled_from(inside))
        index = draw(st.integers(0, segment.count - 1))
        fields["dram_base"] = layout.elem_addr(segment.name, index)
    return _with_flags(draw, Insn(op, **fields), cfg)


@st.composite
def loops(draw, cfg, op):
    fields = _random_fields(draw, cfg, op)
    fmt = cfg.insn_formats[op]
    fields["uop_end"] = draw(st.integers(0, min(fmt.field("uop_end").max, cfg.uop_depth)))
    fields["uop_bgn"] = draw(st.integers(0, min(fields["uop_end"], fmt.field("uop_bgn").max)))
    if op == Opcode.ALU:
        fields["alu_op"] = draw(st.sampled_from(AluOp))
        if fields["alu_op"] == AluOp.MULR:
            fields["use_imm"] = 0
            fields["imm"] = draw(st.integers(0, mulr_max_shift(cfg.acc_bits)))
        elif fields["alu_op"] == AluOp.CLIP:
            fields["use_imm"] = 1
        elif not fields["use_imm"]:
            fields["imm"] = 0
    return _with_flags(draw, Insn(op, **fields), cfg)


@st.composite
def kernel_loads(draw, cfg, layout):
    loadable = [name for name, uops in layout.kernels.items() if uops]
    if not loadable:
        return _with_flags(draw, NOPS[1], cfg)
    dram, length = layout.kernel_addr(draw(st.sampled_from(loadable)))
    sram = _in_range(draw, cfg, Opcode.LOAD, "sram_base")
    insn = Insn(Opcode.LOAD, mem_type=MemType.UOP, sram_base=sram, dram_base=dram, y_size=1,
                x_size=length, x_stride=length)
    return _with_flags(draw, insn, cfg)


@st.composite
def nops(draw, cfg):
    return _with_flags(draw, draw(st.sampled_from(NOPS)), cfg)


def uops(cfg):
    fmt = cfg.uop_format
    return st.builds(Uop, *(st.integers(f.min, f.max) for f in fmt.fields))


def segments():
    return st.lists(
        st.builds(Segment, names, st.sampled_from(SEGMENT_KINDS), st.sampled_from(SEGMENT_MEMS),
                  st.integers(0, 20)),
        max_size=4,
        unique_by=lambda s: s.name,
    )


@st.composite
def programs(draw, cfg):
    segs = draw(segments())
    kernels = draw(st.dictionaries(names, st.lists(uops(cfg), min_size=1, max_size=4), max_size=3))
    layout = Layout(cfg, segs, kernels)
    insn = st.one_of(
        transfers(cfg, layout),
        loops(cfg, Opcode.GEMM),
        loops(cfg, Opcode.ALU),
        kernel_loads(cfg, layout),
        nops(cfg),
    )
    body = draw(st.lists(insn, max_size=10))
    finish = _with_flags(draw, Insn(Opcode.FINISH), cfg)
    return Program(cfg, [*body, finish], segs, kernels)


def _segment_table(program):
    return [(s.name, s.kind, s.mem, s.count, s.offset) for s in program.segments.values()]


@pytest.mark.parametrize("name", CONFIGS)
@settings(derandomize=True, max_examples=75, deadline=None)
@given(data=st.data())
def test_random_programs_round_trip(name, data):
    program = data.draw(programs(CONFIGS[name]))
    text = disassemble(program)
    again = assemble(text)
    assert again.config == program.config
    assert again.insns == program.insns
    assert again.kernels == program.kernels
    assert _segment_table(again) == _segment_table(program)
    assert disassemble(again) == text


@settings(derandomize=True, max_examples=30, deadline=None)
@given(program=programs(SMALL))
def test_initial_data_is_noted_and_the_rest_round_trips(program):
    segments = [
        Segment(s.name, s.kind, s.mem, s.count, bytes(s.nbytes(SMALL)))
        for s in program.segments.values()
        if s.name != UOP_SEGMENT
    ]
    program = Program(SMALL, program.insns, segments, program.kernels)
    text = disassemble(program)
    for segment in segments:
        assert f"; segment {segment.name}: {len(segment.data)} bytes of initial" in text
    again = assemble(text)
    assert again.insns == program.insns
    assert disassemble(again) == re.sub(r"  ; segment .*", "", text)


vocabulary = st.sampled_from([
    "load", "store", "nop", "gemm", "alu", "finish", "uop", ".kernel", ".end", ".segment",
    ".config", ".bogus", "inp", "wgt", "out", "acc", "add", "mov", "compute", "small", "k", "x",
    "input", "weights", "sram=0", "dram=x+1", "dram=x+99", "dram=k", "dram=0x10", "y=1", "x=4",
    "stride=4", "pad=1,1,1,1", "pad=1", "kernel=k", "uop=0:1", "uop=1:0", "iter=1,1", "iter=1",
    "imm=-3", "imm=99999", "pop=prev", "push=next,prev", "push=side", "reset", "=", "0x", "-",
    "1", "3", "data=absent.npy", "+", ",", ":", "dst=1", "sram=99999", "batch=1", "É",
])


@settings(derandomize=True, max_examples=300, deadline=None)
@given(lines=st.lists(st.lists(vocabulary, max_size=6).map(" ".join), max_size=8))
def test_any_text_either_assembles_or_raises_asm_error(lines):
    text = "\n".join([".config small", *lines, "finish"])
    try:
        assemble(text)
    except AsmError as exc:
        assert re.match(r"<text>:\d+: \S", str(exc))
        assert "\n" not in str(exc)


@settings(derandomize=True, max_examples=200, deadline=None)
@given(text=st.text(max_size=120))
def test_arbitrary_characters_raise_only_asm_error(text):
    try:
        assemble(f".config small\n{text}\nfinish")
    except AsmError as exc:
        assert re.match(r"<text>:\d+: \S", str(exc))


# -- a hand-written program --------------------------------------------------------------------

EXAMPLE = """\
; a tiny matmul step on the small config
.config small
.segment x input inp 8        # 4-byte INP elements
.segment w weights wgt 4
.segment y output out 8
.kernel k
    uop 0 0 0
    uop dst=1 src=1 wgt=1     ; keyword form
.end

LOAD UOP sram=0 kernel=k
load inp sram=0 dram=x+2 y=2 x=4 stride=0x4 pad=0, 0, 1, 1 push=next
load wgt sram=0 dram=w y=1 x=4 stride=4
nop load push=next
nop compute pop=prev
gemm uop=0:2 iter=1,4 dst=1,0 src=1,0 wgt=0,1 reset push=next
alu add uop=0:2 iter=1,1 imm=-3
alu max uop=0:2 iter=1,1 dst=0,1 src=2,0
store out sram=0 dram=y + 1 y=1 x=4 stride=4 pop=prev
store out sram=0 dram=300 y=1 x=4 stride=4
nop store push=prev
finish
"""


def test_example_assembles_to_exact_fields():
    program = assemble(EXAMPLE)
    # uops at byte 0; x at byte 64 (element 16); w at byte 128 (16-byte WGT element 8);
    # y at byte 192 (4-byte OUT element 48).
    assert [program.elem_addr(s) for s in ("x", "w", "y")] == [16, 8, 48]
    assert program.kernels == {"k": [Uop(0, 0, 0), Uop(1, 1, 1)]}
    assert program.insns == [
        Insn(Opcode.LOAD, mem_type=MemType.UOP, dram_base=0, y_size=1, x_size=2, x_stride=2),
        Insn(Opcode.LOAD, mem_type=MemType.INP, dram_base=18, y_size=2, x_size=4, x_stride=4,
             x_pad_0=1, x_pad_1=1, push_next=1),
        Insn(Opcode.LOAD, mem_type=MemType.WGT, dram_base=8, y_size=1, x_size=4, x_stride=4),
        Insn(Opcode.LOAD, mem_type=MemType.INP, push_next=1),
        Insn(Opcode.LOAD, mem_type=MemType.UOP, pop_prev=1),
        Insn(Opcode.GEMM, uop_end=2, iter_out=1, iter_in=4, dst_factor_out=1, src_factor_out=1,
             wgt_factor_in=1, reset=1, push_next=1),
        Insn(Opcode.ALU, uop_end=2, iter_out=1, iter_in=1, alu_op=AluOp.ADD, use_imm=1, imm=-3),
        Insn(Opcode.ALU, uop_end=2, iter_out=1, iter_in=1, alu_op=AluOp.MAX, dst_factor_in=1,
             src_factor_out=2),
        Insn(Opcode.STORE, mem_type=MemType.OUT, dram_base=49, y_size=1, x_size=4, x_stride=4,
             pop_prev=1),
        Insn(Opcode.STORE, mem_type=MemType.OUT, dram_base=300, y_size=1, x_size=4, x_stride=4),
        Insn(Opcode.STORE, mem_type=MemType.OUT, push_prev=1),
        Insn(Opcode.FINISH),
    ]


def test_example_disassembles_to_canonical_text():
    lines = disassemble(assemble(EXAMPLE)).splitlines()
    assert lines[:10] == [
        ".config small",
        "",
        ".segment x input inp 8",
        ".segment w weights wgt 4",
        ".segment y output out 8",
        "",
        ".kernel k",
        "    uop 0 0 0",
        "    uop 1 1 1",
        ".end",
    ]
    body = [line.split(";")[0].rstrip() for line in lines[11:]]
    assert body == [
        "load uop sram=0 kernel=k",
        "load inp sram=0 dram=x+2 y=2 x=4 stride=4 pad=0,0,1,1 push=next",
        "load wgt sram=0 dram=w y=1 x=4 stride=4",
        "nop load push=next",
        "nop compute pop=prev",
        "gemm uop=0:2 iter=1,4 dst=1,0 src=1,0 wgt=0,1 reset push=next",
        "alu add uop=0:2 iter=1,1 dst=0,0 src=0,0 imm=-3",
        "alu max uop=0:2 iter=1,1 dst=0,1 src=2,0",
        "store out sram=0 dram=y+1 y=1 x=4 stride=4 pop=prev",
        "store out sram=0 dram=300 y=1 x=4 stride=4",
        "nop store push=prev",
        "finish",
    ]
    assert lines[11].endswith("; #0") and lines[-1].endswith("; #11")


def test_disassembly_prints_inline_config_and_near_misses_literally():
    cfg = CONFIGS["custom"]
    kernels = {"k": [Uop(0, 0, 0), Uop(1, 1, 0)]}
    insns = [
        Insn(Opcode.LOAD, mem_type=MemType.UOP, y_size=1, x_size=2, x_stride=3),  # stride differs
        Insn(Opcode.LOAD, mem_type=MemType.UOP, y_size=1, x_size=1, x_stride=1),  # shorter
        Insn(Opcode.LOAD, mem_type=MemType.WGT),  # all zero, but not a nop's memory type
        Insn(Opcode.LOAD, mem_type=MemType.INP, x_size=0, y_size=1),  # a no-op, not canonical
        Insn(Opcode.ALU, alu_op=AluOp.MOV, use_imm=1, imm=0),
        Insn(Opcode.FINISH, pop_prev=1, pop_next=1, push_prev=1, push_next=1),
    ]
    text = disassemble(Program(cfg, insns, [], kernels))
    assert text.startswith(
        ".config batch=2 block_in=8 block_out=4 inp_bits=4 wgt_bits=2 acc_bits=24 out_bits=4 "
        "uop_depth=512 inp_depth=512 wgt_depth=128 acc_depth=512 axi_data_bits=64 "
        "insn_queue_depth=32 dep_queue_depth=4\n"
    )
    body = [line.split(";")[0].rstrip() for line in text.splitlines()[-6:]]
    assert body == [
        "load uop sram=0 dram=uops y=1 x=2 stride=3",
        "load uop sram=0 dram=uops y=1 x=1 stride=1",
        "load wgt sram=0 dram=0 y=0 x=0 stride=0",
        "load inp sram=0 dram=0 y=1 x=0 stride=0",
        "alu mov uop=0:0 iter=0,0 dst=0,0 src=0,0 imm=0",
        "finish pop=prev,next push=prev,next",
    ]
    assert assemble(text).insns == insns


def test_mulr_and_clip_text():
    program = assemble(
        ".config small\nalu mulr uop=0:0 iter=1,1 src=1,0 shift=47\n"
        "alu clip uop=0:0 iter=1,1 clip=-128,127\nalu clip uop=0:0 iter=1,1 imm=0x7F00\nfinish\n"
    )
    assert program.insns[:3] == [
        Insn(Opcode.ALU, alu_op=AluOp.MULR, iter_out=1, iter_in=1, src_factor_out=1, imm=47),
        Insn(Opcode.ALU, alu_op=AluOp.CLIP, iter_out=1, iter_in=1, use_imm=1, imm=0x7F80),
        Insn(Opcode.ALU, alu_op=AluOp.CLIP, iter_out=1, iter_in=1, use_imm=1, imm=0x7F00),
    ]
    body = [line.split(";")[0].rstrip() for line in disassemble(program).splitlines()[-4:-1]]
    assert body == [
        "alu mulr uop=0:0 iter=1,1 dst=0,0 src=1,0 shift=47",
        "alu clip uop=0:0 iter=1,1 dst=0,0 src=0,0 clip=-128,127",
        "alu clip uop=0:0 iter=1,1 dst=0,0 src=0,0 clip=0,127",
    ]
    with pytest.raises(AsmError, match=r"<text>:2: CLIP bounds must be signed bytes, not \(0, 1"):
        assemble(".config small\nalu clip uop=0:0 iter=1,1 clip=0,128\nfinish\n")
    with pytest.raises(AsmError, match="MULR shift imm=48 is outside"):
        assemble(".config small\nalu mulr uop=0:0 iter=1,1 shift=48\nfinish\n")


def test_mnemonics_keys_and_keywords_ignore_case_but_names_do_not():
    program = assemble(
        ".CONFIG Small\n.SEGMENT Buf INPUT INP 2\n"
        "LOAD INP SRAM=1 DRAM=Buf+1 Y=1 X=1 STRIDE=1 PUSH=NEXT\n"
        "ALU RSHR UOP=0:0 ITER=1,1 IMM=0X10\nFinish POP=Prev,Next\n"
    )
    assert program.insns == [
        Insn(Opcode.LOAD, mem_type=MemType.INP, sram_base=1, dram_base=program.elem_addr("Buf", 1),
             y_size=1, x_size=1, x_stride=1, push_next=1),
        Insn(Opcode.ALU, alu_op=AluOp.RSHR, iter_out=1, iter_in=1, use_imm=1, imm=16),
        Insn(Opcode.FINISH, pop_prev=1, pop_next=1),
    ]
    with pytest.raises(AsmError, match="unknown segment buf"):
        assemble(".config small\n.segment Buf input inp 2\n"
                 "load inp sram=0 dram=buf y=1 x=1 stride=1\nfinish")


def test_declarations_may_follow_their_use():
    program = assemble(
        "load inp sram=0 dram=late+1 y=1 x=1 stride=1\nload uop sram=0 kernel=kk\nfinish\n"
        ".kernel kk\nuop 1 2\n.end\n.segment late input inp 2\n.config small\n"
    )
    assert program.insns[0].dram_base == program.elem_addr("late", 1)
    assert program.insns[1].dram_base == program.kernel_addr("kk")[0]


# -- configs -----------------------------------------------------------------------------------


def test_config_argument_stands_in_for_the_directive():
    assert assemble("finish", config=SMALL).config == SMALL
    assert assemble(".config small\nfinish", config=load_config("small")).config == SMALL


def test_inline_config_and_config_file(tmp_path):
    inline = " ".join(f"{k}={v}" for k, v in SMALL.to_dict().items())
    assert assemble(f".config {inline}\nfinish").config == SMALL
    assert "lut_mult_bits" not in inline  # optional: at its default it is left out
    lut = dataclasses.replace(SMALL, lut_mult_bits=4)
    program = assemble(f".config {inline} lut_mult_bits=4\nfinish")
    assert program.config == lut and assemble(disassemble(program)).config == lut
    (tmp_path / "mine.toml").write_text(
        "\n".join(f"{k} = {v}" for k, v in SMALL.to_dict().items())
    )
    assert assemble(".config mine.toml\nfinish", base_dir=tmp_path).config == SMALL


@pytest.mark.parametrize(
    ("text", "kwargs", "message"),
    [
        ("finish", {}, "<text>:1: no .config directive: add `.config small` or pass --config"),
        ("\n.config small\nfinish", {"config": load_config("default")}, "<text>:2: .config 1x4x4"),
        (".config batch=1\nfinish", {}, "<text>:1: .config with inline fields needs every field"),
        (".config tiny\nfinish", {}, "<text>:1: .config tiny is neither a preset"),
        (".config small\n.config small\nfinish", {}, "<text>:2: second .config (the first is at"),
        (".config small batch=3\nfinish", {}, "<text>:1: .config does not take 'small'"),
    ],
)
def test_config_errors(text, kwargs, message):
    with pytest.raises(AsmError) as info:
        assemble(text, **kwargs)
    assert str(info.value).startswith(message)


def test_invalid_inline_config_reports_the_field():
    fields = SMALL.to_dict() | {"block_in": 3}
    inline = " ".join(f"{k}={v}" for k, v in fields.items())
    with pytest.raises(AsmError, match=r"^<text>:1: block_in must be a power of two"):
        assemble(f".config {inline}\nfinish")


# -- errors ------------------------------------------------------------------------------------

LOAD = "load inp sram=0 dram=0 y=1 x=1 stride=1"

# (the lines after `.config small`, the line that is wrong, words its message must contain)
ERRORS = [
    ("lod inp sram=0\nfinish", 2, ["unknown mnemonic lod"]),
    (f"{LOAD} strid=4\nfinish", 2, ["no key strid="]),
    (f"{LOAD} sram=1\nfinish", 2, ["sram is given twice"]),
    ("gemm uop=0:1 iter=1,1 resett\nfinish", 2, ["'resett'"]),
    ("load inp sram=0 dram=0 y=1 x=1\nfinish", 2, ["load inp needs stride="]),
    ("store out dram=0 y=1 x=1 stride=1\nfinish", 2, ["store out needs sram="]),
    ("gemm iter=1,1\nfinish", 2, ["gemm needs uop="]),
    ("alu add uop=0:1\nfinish", 2, ["alu add needs iter="]),
    ("load inp sram=1x dram=0 y=1 x=1 stride=1\nfinish", 2, ["sram=1x is not a number"]),
    ("load inp sram=0 dram=0 y=1 x=1 stride=0x\nfinish", 2, ["stride=0x is not a number"]),
    ("gemm uop=0-1 iter=1,1\nfinish", 2, ["uop=0-1 must be 2 numbers"]),
    (f"{LOAD} pad=1,2,3\nfinish", 2, ["pad=1,2,3 must be 4 numbers"]),
    (f"{LOAD} push=later\nfinish", 2, ["push=later must be prev, next"]),
    (f"{LOAD} push=next,next\nfinish", 2, ["push=next,next"]),
    ("load inpt sram=0\nfinish", 2, ["'inpt'", "inp|wgt|acc|uop|out"]),
    ("alu div uop=0:1 iter=1,1\nfinish", 2, ["'div'", "min|max"]),
    ("nop fetch\nfinish", 2, ["'fetch'", "load|compute|store"]),
    ("load\nfinish", 2, ["load takes", "not nothing"]),
    (".segment a input inp 2\n.segment a output out 2\nfinish", 3, ["segment a", "line 2"]),
    (".kernel k\nuop 0 0\n.end\n.kernel k\n.end\nfinish", 5, ["kernel k", "line 2"]),
    (".segment uops input inp 2\nfinish", 2, ["uops is reserved"]),
    (".segment 9a input inp 2\nfinish", 2, ["'9a' is not a name"]),
    (".segment a inputs inp 2\nfinish", 2, ["kind inputs"]),
    (".segment a input uop 2\nfinish", 2, ["memory uop"]),
    (".segment a input inp -1\nfinish", 2, ["COUNT must be >= 0"]),
    (".segment a input inp\nfinish", 2, [".segment takes NAME KIND MEM COUNT"]),
    (".segment a input inp 2 file=a.npy\nfinish", 2, ["no key file="]),
    ("load inp sram=0 dram=nowhere y=1 x=1 stride=1\nfinish", 2, ["unknown segment nowhere"]),
    (".segment a scratch acc 4\nload inp sram=0 dram=a y=1 x=1 stride=1\nfinish", 3,
     ["segment a holds acc", "addresses inp"]),
    (".segment a input inp 4\nload inp sram=0 dram=a+4 y=1 x=1 stride=1\nfinish", 3,
     ["dram=a+4 is outside segment a"]),
    ("load uop sram=0 kernel=nokernel\nfinish", 2, ["unknown kernel nokernel"]),
    (".kernel e\n.end\nload uop sram=0 kernel=e\nfinish", 3, ["kernel e has no uops"]),
    (".kernel k\nuop 1 1\n.end\nload inp sram=0 kernel=k\nfinish", 5, ["only with load uop"]),
    (".kernel k\nuop 1 1\n.end\nload uop sram=0 kernel=k x=1\nfinish", 5, ["remove x="]),
    ("finish\n.kernel open\nuop 0 0", 3, [".kernel open has no .end"]),
    ("uop 0 0\nfinish", 2, ["uop outside a kernel"]),
    (".kernel k\nfinish\n.end", 3, ["finish inside .kernel k"]),
    (".kernel k\nuop 0\n.end\nfinish", 3, ["uop takes DST SRC"]),
    (".kernel k\nuop dst=1\n.end\nfinish", 3, ["uop needs src="]),
    (".kernel k\nuop 0 0 64\n.end\nfinish", 3, ["field wgt=64 is out of range"]),
    (".end\nfinish", 2, [".end without an open .kernel"]),
    (".kernal k\nfinish", 2, ["unknown directive .kernal"]),
    ("load inp sram=256 dram=0 y=1 x=1 stride=1\nfinish", 2, ["sram_base=256 is out of range"]),
    ("alu add uop=0:1 iter=1,1 imm=40000\nfinish", 2, ["imm=40000 is out of range"]),
    (f"{LOAD} pop=prev\nfinish", 2, ["clear pop_prev"]),
    ("load uop sram=0 dram=0 y=1 x=1 stride=1 pad=1,0,0,0\nfinish", 2, ["LOAD UOP cannot pad"]),
    ("store acc sram=0 dram=0 y=1 x=1 stride=1\nfinish", 2, ["STORE writes only OUT"]),
    ("gemm uop=2:1 iter=1,1\nfinish", 2, ["uop_end 1 < uop_bgn 2"]),
    ("store out sram=0 dram=0 y=1 x=1 stride=1 pad=0,0,1,0\nfinish", 2, ["STORE cannot pad"]),
    ("load out sram=0 dram=0 y=1 x=1 stride=1\nfinish", 2, ["LOAD cannot write OUT"]),
    (LOAD, 2, ["no finish"]),
    ("finish\nfinish", 2, ["finish must be the last instruction"]),
    (f"finish\n{LOAD}", 2, ["finish must be the last instruction"]),
    ("finish pop=prev reset", 2, ["finish does not take 'reset'"]),
]


@pytest.mark.parametrize(("body", "line", "fragments"), ERRORS)
def test_errors_name_the_line_and_the_problem(body, line, fragments):
    with pytest.raises(AsmError) as info:
        assemble(f".config small\n{body}", source="prog.s")
    message = str(info.value)
    assert message.startswith(f"prog.s:{line}: ")
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


# -- initial data ------------------------------------------------------------------------------


def test_segment_data_from_npy(tmp_path):
    values = np.arange(-32, 32, dtype=np.int8).reshape(4, 4, 4)
    np.save(tmp_path / "w.npy", values)
    text = ".config small\n.segment w weights wgt 4 data=w.npy\nfinish\n"
    program = assemble(text, base_dir=tmp_path)
    assert program.segments["w"].data == pack_elements(values, SMALL, "wgt")
    np.testing.assert_array_equal(program.read(program.dram_image(), "w"), values)
    assert ".segment w weights wgt 4  ; segment w: 64 bytes of initial data not shown" in (
        disassemble(program)
    )


def test_assemble_file_reads_data_beside_it(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((2, 1, 4), dtype=np.int64))
    path = tmp_path / "prog.s"
    path.write_text(".segment x input inp 2 data=x.npy\nfinish\n")
    program = assemble_file(path, config=SMALL)
    assert program.segments["x"].data == bytes([1] * 8)
    with pytest.raises(AsmError, match=r"absent\.s: cannot read"):
        assemble_file(tmp_path / "absent.s")


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        (None, "cannot read"),
        (np.zeros((3, 4, 4), np.int8), "has shape (3, 4, 4); segment w needs (4, 4, 4)"),
        (np.zeros((4, 4, 4), np.float32), "holds float32 values"),
        (np.full((4, 4, 4), 200), "value 200 does not fit a signed 8-bit lane"),
    ],
)
def test_bad_segment_data(tmp_path, values, fragment):
    if values is not None:
        np.save(tmp_path / "w.npy", values)
    text = ".config small\n.segment w weights wgt 4 data=w.npy\nfinish\n"
    with pytest.raises(AsmError) as info:
        assemble(text, source="d.s", base_dir=tmp_path)
    assert str(info.value).startswith("d.s:2: ")
    assert fragment in str(info.value)


def test_not_an_npy_file(tmp_path):
    (tmp_path / "w.npy").write_text("hello")
    with pytest.raises(AsmError, match=r"^d\.s:2: data=w\.npy: cannot read"):
        assemble(".config small\n.segment w weights wgt 4 data=w.npy\nfinish",
                 source="d.s", base_dir=tmp_path)
