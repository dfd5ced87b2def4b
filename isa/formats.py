"""Field tables of every instruction format and of the micro-op: the single source of bit positions.

Instructions are `INSN_BITS` wide and micro-ops `UOP_BITS` wide. Fields are packed LSB-first in
table order with no gaps, so a table maps directly onto an Amaranth `data.StructLayout`. Index
fields take their widths from the config's buffer depths; the others have fixed widths below.
The encoder, decoder, assembler, functional simulator and RTL decoder all read these tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from functools import cache
from typing import NamedTuple

from isa.errors import ConfigError

INSN_BITS = 128
UOP_BITS = 32

OPCODE_BITS = 3
MEM_TYPE_BITS = 3
DRAM_ADDR_BITS = 32
SIZE_BITS = 16
STRIDE_BITS = 16
PAD_BITS = 4
LOOP_ITER_BITS = 14
ALU_OP_BITS = 4
IMM_BITS = 16


class Opcode(IntEnum):
    """Instruction opcodes (VTA's values)."""

    LOAD = 0
    STORE = 1
    GEMM = 2
    FINISH = 3
    ALU = 4


class MemType(IntEnum):
    """On-chip buffer a LOAD or STORE addresses (VTA's values)."""

    UOP = 0
    WGT = 1
    INP = 2
    ACC = 3
    OUT = 4

    @property
    def kind(self) -> str:
        """The memory kind name used by HwConfig ("uop", "wgt", ...)."""
        return self.name.lower()


class AluOp(IntEnum):
    """Tensor ALU operations; exact integer semantics are in `isa.semantics`."""

    MIN = 0
    MAX = 1
    ADD = 2
    SHR = 3
    MUL = 4
    RSHR = 5
    MOV = 6
    MULR = 7
    CLIP = 8


class IndexWidths(NamedTuple):
    """Index widths (log2 of buffer depths) that size the variable fields."""

    uop: int
    inp: int
    wgt: int
    acc: int


@dataclass(frozen=True)
class Field:
    """One bit field: name, LSB offset, width, signedness and the config knob that sizes it."""

    name: str
    offset: int
    width: int
    signed: bool = False
    sized_by: str = ""

    @property
    def min(self) -> int:
        """Smallest encodable value."""
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def max(self) -> int:
        """Largest encodable value."""
        return (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1


@dataclass(frozen=True)
class Format:
    """An ordered table of fields packed LSB-first into a word of `word_bits` bits."""

    name: str
    fields: tuple[Field, ...]
    word_bits: int

    @property
    def used_bits(self) -> int:
        """Bits the fields occupy."""
        return sum(f.width for f in self.fields)

    @property
    def names(self) -> tuple[str, ...]:
        """Field names in bit order."""
        return tuple(f.name for f in self.fields)

    def field(self, name: str) -> Field:
        """The field called `name`."""
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def describe(self) -> list[dict]:
        """The table as rows of name, bit range and width (for docs and manifests)."""
        return [
            {
                "name": f.name,
                "lsb": f.offset,
                "msb": f.offset + f.width - 1,
                "width": f.width,
                "signed": f.signed,
            }
            for f in self.fields
        ]


def _table(name: str, word_bits: int, spec: list[tuple]) -> Format:
    fields, offset = [], 0
    for name_, width, *rest in spec:
        signed = bool(rest and rest[0] == "signed")
        sized_by = rest[-1] if rest and rest[-1] != "signed" else ""
        fields.append(Field(name_, offset, width, signed, sized_by))
        offset += width
    return Format(name, tuple(fields), word_bits)


_HEADER = [
    ("opcode", OPCODE_BITS),
    ("pop_prev", 1),
    ("pop_next", 1),
    ("push_prev", 1),
    ("push_next", 1),
]

DEP_FLAGS = ("pop_prev", "pop_next", "push_prev", "push_next")


def _loop_fields(w: IndexWidths) -> list[tuple]:
    src = max(w.inp, w.acc)
    return [
        ("uop_bgn", w.uop, "uop_depth"),
        ("uop_end", w.uop + 1, "uop_depth"),
        ("iter_out", LOOP_ITER_BITS),
        ("iter_in", LOOP_ITER_BITS),
        ("dst_factor_out", w.acc, "acc_depth"),
        ("dst_factor_in", w.acc, "acc_depth"),
        ("src_factor_out", src, "inp_depth/acc_depth"),
        ("src_factor_in", src, "inp_depth/acc_depth"),
    ]


def instruction_formats(w: IndexWidths) -> dict[Opcode, Format]:
    """Field tables of LOAD, STORE, GEMM, ALU and FINISH for the given index widths."""
    sram = max(w)
    mem = [
        *_HEADER,
        ("mem_type", MEM_TYPE_BITS),
        ("sram_base", sram, "largest buffer depth"),
        ("dram_base", DRAM_ADDR_BITS),
        ("y_size", SIZE_BITS),
        ("x_size", SIZE_BITS),
        ("x_stride", STRIDE_BITS),
        ("y_pad_0", PAD_BITS),
        ("y_pad_1", PAD_BITS),
        ("x_pad_0", PAD_BITS),
        ("x_pad_1", PAD_BITS),
    ]
    gemm = [
        *_HEADER,
        *_loop_fields(w),
        ("wgt_factor_out", w.wgt, "wgt_depth"),
        ("wgt_factor_in", w.wgt, "wgt_depth"),
        ("reset", 1),
    ]
    alu = [
        *_HEADER,
        *_loop_fields(w),
        ("alu_op", ALU_OP_BITS),
        ("use_imm", 1),
        ("imm", IMM_BITS, "signed"),
    ]
    return {
        Opcode.LOAD: _table("LOAD", INSN_BITS, mem),
        Opcode.STORE: _table("STORE", INSN_BITS, mem),
        Opcode.GEMM: _table("GEMM", INSN_BITS, gemm),
        Opcode.ALU: _table("ALU", INSN_BITS, alu),
        Opcode.FINISH: _table("FINISH", INSN_BITS, list(_HEADER)),
    }


def uop_format(w: IndexWidths) -> Format:
    """Field table of a micro-op: accumulator, source (INP for GEMM, ACC for ALU), weight index."""
    return _table(
        "UOP",
        UOP_BITS,
        [
            ("dst", w.acc, "acc_depth"),
            ("src", max(w.inp, w.acc), "inp_depth/acc_depth"),
            ("wgt", w.wgt, "wgt_depth"),
        ],
    )


def check_fits(insn_formats: dict[Opcode, Format], uop: Format) -> None:
    """Raise ConfigError naming the format and the sized fields when a table overflows its word."""
    for fmt in (*insn_formats.values(), uop):
        if fmt.used_bits <= fmt.word_bits:
            continue
        sized = {}
        for f in fmt.fields:
            if f.sized_by:
                sized.setdefault(f.sized_by, []).append(f"{f.name} ({f.width} bits)")
        detail = "; ".join(f"{knob}: {', '.join(names)}" for knob, names in sized.items())
        raise ConfigError(
            f"{fmt.name} fields need {fmt.used_bits} bits but the word has {fmt.word_bits}: "
            f"{detail}; reduce those buffer depths"
        )


@cache
def field_names(op: Opcode) -> tuple[str, ...]:
    """Field names of an opcode's format (they do not depend on the config)."""
    return instruction_formats(IndexWidths(1, 1, 1, 1))[op].names
