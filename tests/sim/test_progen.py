"""The random program generator: safe, deterministic programs that cover the ISA; the checker."""

from __future__ import annotations

import random
from collections import Counter
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings

from isa import load_config
from isa.asm import assemble, disassemble
from isa.config import HwConfig
from isa.formats import DEP_FLAGS, AluOp, MemType, Opcode
from isa.instructions import FINISH, NOP_COMPUTE, Insn, Stage, decode_uop, is_nop, stage_of
from isa.program import Program, Segment
from loom.samples import matmul_program
from sim.functional import FunctionalSim
from sim.progen import SIZES, hazards, programs, random_program

SMALL = load_config("small")
# 1x8x8 on a 32-bit bus with tiny buffers and the shallowest queues the config allows.
TINY = HwConfig(batch=1, block_in=8, block_out=8, uop_depth=64, inp_depth=32, wgt_depth=16,
                acc_depth=32, axi_data_bits=32, insn_queue_depth=2, dep_queue_depth=2)
CONFIGS = {"small": SMALL, "tiny": TINY,
           **{name: load_config(name) for name in ("default", "int4", "nonsquare")}}
PADS = ("y_pad_0", "y_pad_1", "x_pad_0", "x_pad_1")


@pytest.mark.parametrize(("name", "size", "count"), [
    ("small", "small", 300), ("tiny", "small", 200), ("default", "small", 30),
    ("int4", "small", 30), ("nonsquare", "small", 30), ("small", "medium", 40),
    ("tiny", "medium", 40), ("nonsquare", "medium", 10),
])
def test_programs_are_safe_and_run_on_the_functional_sim(name, size, count):
    cfg = CONFIGS[name]
    for seed in range(count):
        program, dram = random_program(cfg, seed, size=size)
        assert hazards(program) == [], f"seed {seed}"
        FunctionalSim(cfg).run(program, dram)  # raises SimError or DeadlockError on a bad one


def features(program: Program) -> Counter:
    """What a program exercises, by name, for coverage assertions."""
    found = Counter()
    uops = {}  # uop-buffer index -> Uop, as LOAD UOPs fill it
    image = program.dram_image()
    for insn in program.insns:
        stage = stage_of(insn)
        found.update((stage.name, flag) for flag in DEP_FLAGS if getattr(insn, flag))
        if is_nop(insn):
            found["NOP", stage.name] += 1
        elif insn.op in (Opcode.LOAD, Opcode.STORE):
            found.update(transfer_features(insn))
            if insn.mem == MemType.UOP:
                for n in range(insn.y_size * insn.x_size):
                    at = 4 * (insn.dram_base + n // insn.x_size * insn.x_stride + n % insn.x_size)
                    word = int.from_bytes(image[at : at + 4].tobytes(), "little")
                    uops[insn.sram_base + n] = decode_uop(word, program.config)
        elif insn.op in (Opcode.GEMM, Opcode.ALU):
            found.update(loop_features(insn, [uops.get(k) for k in
                                              range(insn.uop_bgn, insn.uop_end)]))
        else:
            found[insn.op.name] += 1
    return found


def transfer_features(insn: Insn) -> list:
    what = (insn.op.name, insn.mem.name)
    names = [what, *((p, "set") for p in PADS if getattr(insn, p))]
    names += [(p, "max") for p in PADS if getattr(insn, p) == 15]
    if insn.y_size == 0 and insn.y_pad_0 + insn.y_pad_1:
        names.append((*what, "zero fill"))
    if insn.y_size > 1:
        stride = insn.x_stride
        relation = "0" if stride == 0 else "<" if stride < insn.x_size else \
            "=" if stride == insn.x_size else ">"
        names.append((*what, "stride", relation))
    if insn.mem == MemType.UOP and insn.y_size > 1:
        names.append(("LOAD", "UOP", "2-D"))
    return names


def loop_features(insn: Insn, uops: list) -> list:
    if not insn.iter_out * insn.iter_in * (insn.uop_end - insn.uop_bgn):
        return [(insn.op.name, "empty")]
    repeat = (insn.iter_out > 1 and insn.dst_factor_out == 0) or \
        (insn.iter_in > 1 and insn.dst_factor_in == 0) or len({u.dst for u in uops}) < len(uops)
    names = [(insn.op.name, "repeated dst")] if repeat else []
    if insn.op == Opcode.GEMM:
        return [*names, ("GEMM", "reset" if insn.reset else "accumulate")]
    op = AluOp(insn.alu_op).name
    if insn.use_imm:
        names += [("ALU", op, "imm"), ("imm", "negative" if insn.imm < 0 else "positive")]
        names += [("imm", "wide")] if abs(insn.imm) > 1 << 12 else []
        if insn.alu_op in (AluOp.SHR, AluOp.RSHR) and insn.imm < 0:
            names.append(("ALU", op, "left shift"))
        return names
    names.append(("ALU", op, "acc"))
    same_factors = (insn.src_factor_out, insn.src_factor_in) == \
        (insn.dst_factor_out, insn.dst_factor_in)
    if same_factors and all(u.src == u.dst for u in uops):
        names.append(("ALU", "src is dst"))
    if same_factors and len(uops) > 1 and all(b.src == a.dst for a, b in pairwise(uops)):
        names.append(("ALU", "chain"))
    return names


def test_a_batch_covers_the_isa():
    found = Counter()
    for seed in range(300):
        found += features(random_program(SMALL, seed)[0])
    expected = [
        ("LOAD", "INP"), ("LOAD", "WGT"), ("LOAD", "ACC"), ("LOAD", "UOP"), ("STORE", "OUT"),
        ("LOAD", "UOP", "2-D"), "FINISH",
        *((p, kind) for p in PADS for kind in ("set", "max")),
        *(("LOAD", m, "zero fill") for m in ("INP", "WGT", "ACC")),
        *(("LOAD", m, "stride", r) for m in ("INP", "WGT", "ACC") for r in "<=>0"),
        *(("STORE", "OUT", "stride", r) for r in "<=>0"),
        ("GEMM", "reset"), ("GEMM", "accumulate"), ("GEMM", "repeated dst"), ("GEMM", "empty"),
        *(("ALU", op.name, src) for op in AluOp for src in ("imm", "acc")
          if (op, src) not in ((AluOp.MULR, "imm"), (AluOp.CLIP, "acc"))),
        ("ALU", "SHR", "left shift"), ("ALU", "RSHR", "left shift"), ("ALU", "repeated dst"),
        ("ALU", "src is dst"), ("ALU", "chain"), ("ALU", "empty"),
        ("imm", "negative"), ("imm", "positive"), ("imm", "wide"),
        *(("NOP", stage.name) for stage in Stage),
        ("LOAD", "pop_next"), ("LOAD", "push_next"), ("STORE", "pop_prev"),
        ("STORE", "push_prev"), *(("COMPUTE", flag) for flag in DEP_FLAGS),
    ]
    rare = {name: found[name] for name in expected if found[name] < 3}
    assert not rare, f"exercised fewer than 3 times in 300 programs: {rare}"


def test_programs_are_deterministic_per_seed():
    first, image = random_program(SMALL, 42)
    for rng in (42, random.Random(42)):
        again, again_image = random_program(SMALL, rng)
        assert again.insns == first.insns and again.kernels == first.kernels
        assert np.array_equal(again_image, image)
    assert random_program(SMALL, 43)[0].insns != first.insns


@pytest.mark.parametrize("name", ["small", "tiny", "nonsquare"])
def test_assembler_round_trip(name):
    for seed in range(40):
        program, _ = random_program(CONFIGS[name], seed)
        text = disassemble(program)
        again = assemble(text)
        assert again.insns == program.insns and again.kernels == program.kernels, f"seed {seed}"
        assert again.dram_size == program.dram_size and disassemble(again) == text


def test_every_segment_holds_random_data():
    program, image = random_program(SMALL, 3)
    for name in ("A", "W", "bias", "C"):
        values = program.read(image, name)
        assert values.min() < -64 and values.max() > 64, name


@settings(max_examples=25, deadline=None)
@given(programs(SMALL))
def test_the_strategy_makes_safe_programs(pair):
    program, dram = pair
    assert hazards(program) == []
    FunctionalSim(SMALL).run(program, dram)


def test_unknown_size_is_refused():
    with pytest.raises(ValueError, match="small, medium"):
        random_program(SMALL, 0, size="huge")
    assert set(SIZES) == {"small", "medium"}


# -- the checker -------------------------------------------------------------------------------


def without(program: Program, index: int, flag: str) -> Program:
    """The program with one dependency flag of one instruction cleared."""
    insns = list(program.insns)
    insns[index] = insns[index].replace(**{flag: 0})
    segments = [s for name, s in program.segments.items() if name != "uops"]
    return Program(program.config, insns, segments, program.kernels)


def test_hazards_accept_the_sample_pattern_and_catch_missing_tokens():
    program = matmul_program(SMALL, 8, 16, 8, seed=1).program
    assert hazards(program) == []
    first = {op: next(i for i, insn in enumerate(program.insns) if insn.op == op and insn.pop_prev)
             for op in (Opcode.GEMM, Opcode.STORE)}
    problems = hazards(without(program, first[Opcode.GEMM], "pop_prev"))
    assert any("race on INP" in p for p in problems) and any("race on WGT" in p for p in problems)
    problems = hazards(without(program, first[Opcode.STORE], "pop_prev"))
    assert any("race on OUT" in p for p in problems)
    # Dropping an initial push leaves the last pop of that queue without a token.
    assert any("which no earlier instruction pushes" in p
               for p in hazards(without(program, len(program.kernels), "push_prev")))


def test_hazards_catch_a_full_queue_and_unwritten_rows():
    depth = SMALL.dep_queue_depth
    pushes = [NOP_COMPUTE.replace(push_prev=1)] * (depth + 1)
    assert any("may be full" in p for p in hazards(Program(SMALL, [*pushes, FINISH])))
    gemm = Insn(Opcode.GEMM, uop_bgn=0, uop_end=1, iter_out=1, iter_in=1)
    load = Insn(Opcode.LOAD, mem_type=MemType.UOP, sram_base=0, dram_base=0, y_size=1, x_size=1,
                x_stride=1)
    program = Program(SMALL, [load, gemm, FINISH], kernels={"k": [(0, 0, 0)]})
    problems = " ".join(hazards(program))
    for kind in ("ACC", "INP", "WGT"):
        assert f"reads {kind} row 0 before anything writes it" in problems


def test_hazards_catch_loads_of_stored_dram():
    segments = [Segment("C", "output", "out", 4)]
    layout = Program(SMALL, [FINISH], segments)
    addr = layout.elem_addr("C")
    transfer = {"sram_base": 0, "dram_base": addr, "y_size": 1, "x_size": 1, "x_stride": 1}
    store = Insn(Opcode.STORE, mem_type=MemType.OUT, **transfer)
    # An ACC element is 4 OUT elements on small: the same DRAM bytes.
    load = Insn(Opcode.LOAD, mem_type=MemType.ACC, **transfer | {"dram_base": addr // 4})
    program = Program(SMALL, [load, store, FINISH], segments)
    assert any("loads DRAM bytes that a STORE writes" in p for p in hazards(program))
