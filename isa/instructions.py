"""Decoded instructions and micro-ops, their encoding to words, and the rules that make them legal.

An `Insn` is an opcode plus a value for every field of that opcode's format (absent fields are 0).
`encode` range-checks every field against the config's table before packing, so a value never
wraps silently; `decode` rejects unknown opcodes, memory types and ALU ops. `check` enforces the
rules that field ranges alone do not: which memory types each opcode takes, where padding is
allowed, which dependency flags each stage may use, and how each ALU op sets use_imm and imm.
"""

from __future__ import annotations

from enum import Enum, IntEnum
from typing import NamedTuple

import numpy as np

from isa.config import HwConfig
from isa.errors import IsaError
from isa.formats import DEP_FLAGS, INSN_BITS, AluOp, Format, MemType, Opcode, field_names
from isa.semantics import mulr_max_shift

INSN_BYTES = INSN_BITS // 8


class Insn:
    """One instruction: an opcode and its field values by name (missing fields are 0)."""

    __slots__ = ("_values", "op")

    def __init__(self, op: Opcode, **values: int):
        op = Opcode(op)
        names = field_names(op)
        unknown = [k for k in values if k not in names or k == "opcode"]
        if unknown:
            raise IsaError(
                f"{op.name} has no field {', '.join(unknown)}; its fields are "
                f"{', '.join(n for n in names if n != 'opcode')}"
            )
        object.__setattr__(self, "op", op)
        full = {n: int(values.get(n, 0)) for n in names if n != "opcode"}
        object.__setattr__(self, "_values", full)

    def __getattr__(self, name: str) -> int:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"{self.op.name} has no field {name}") from None

    def __setattr__(self, name, value):
        raise AttributeError("Insn is immutable; use replace()")

    def fields(self) -> dict[str, int]:
        """Field values by name, opcode excluded."""
        return dict(self._values)

    def replace(self, **values: int) -> Insn:
        """A copy with some fields changed."""
        return Insn(self.op, **(self._values | values))

    @property
    def mem(self) -> MemType:
        """Memory type of a LOAD or STORE."""
        return MemType(self._values["mem_type"])

    @property
    def stage(self) -> Stage:
        """The stage (load, compute or store) whose queue this instruction is routed to."""
        return stage_of(self)

    def __eq__(self, other) -> bool:
        return isinstance(other, Insn) and self.op == other.op and self._values == other._values

    def __hash__(self) -> int:
        return hash((self.op, tuple(self._values.items())))

    def __repr__(self) -> str:
        nonzero = ", ".join(f"{k}={v}" for k, v in self._values.items() if v)
        return f"Insn({self.op.name}{', ' if nonzero else ''}{nonzero})"


class Uop(NamedTuple):
    """A micro-op: accumulator index, source index (INP for GEMM, ACC for ALU), weight index."""

    dst: int
    src: int
    wgt: int = 0


class Stage(IntEnum):
    """The three execution stages; fetch routes every instruction to one of them."""

    LOAD = 0
    COMPUTE = 1
    STORE = 2


class TokenQueue(Enum):
    """The four dependency-token queues between neighbouring stages."""

    L2G = "load->compute"
    G2L = "compute->load"
    G2S = "compute->store"
    S2G = "store->compute"


# (stage, flag) -> token queue; a flag absent here is illegal on that stage.
_FLAG_QUEUES = {
    (Stage.LOAD, "pop_next"): TokenQueue.G2L,
    (Stage.LOAD, "push_next"): TokenQueue.L2G,
    (Stage.COMPUTE, "pop_prev"): TokenQueue.L2G,
    (Stage.COMPUTE, "pop_next"): TokenQueue.S2G,
    (Stage.COMPUTE, "push_prev"): TokenQueue.G2L,
    (Stage.COMPUTE, "push_next"): TokenQueue.G2S,
    (Stage.STORE, "pop_prev"): TokenQueue.G2S,
    (Stage.STORE, "push_prev"): TokenQueue.S2G,
}


def stage_of(insn: Insn) -> Stage:
    """VTA's routing: STORE to store, LOAD of INP/WGT to load, everything else to compute."""
    if insn.op == Opcode.STORE:
        return Stage.STORE
    if insn.op == Opcode.LOAD and insn.mem_type in (MemType.INP, MemType.WGT):
        return Stage.LOAD
    return Stage.COMPUTE


def pops(insn: Insn) -> list[TokenQueue]:
    """Token queues this instruction pops (waits on) before it executes."""
    stage = stage_of(insn)
    return [_FLAG_QUEUES[stage, f] for f in ("pop_prev", "pop_next") if getattr(insn, f)]


def pushes(insn: Insn) -> list[TokenQueue]:
    """Token queues this instruction pushes to after it completes."""
    stage = stage_of(insn)
    return [_FLAG_QUEUES[stage, f] for f in ("push_prev", "push_next") if getattr(insn, f)]


# The canonical dependency-only instructions of each stage (`nop load|compute|store` in the
# assembler) and the end of a program.
NOP_LOAD = Insn(Opcode.LOAD, mem_type=MemType.INP)
NOP_COMPUTE = Insn(Opcode.LOAD, mem_type=MemType.UOP)
NOP_STORE = Insn(Opcode.STORE, mem_type=MemType.OUT)
FINISH = Insn(Opcode.FINISH)


def is_nop(insn: Insn) -> bool:
    """True for a LOAD/STORE that moves no data (x_size == 0): a dependency-only sync."""
    return insn.op in (Opcode.LOAD, Opcode.STORE) and insn.x_size == 0


def check(insn: Insn, cfg: HwConfig) -> None:
    """Raise IsaError when an instruction is illegal beyond its field ranges."""
    stage = stage_of(insn)
    for flag in DEP_FLAGS:
        if getattr(insn, flag) and (stage, flag) not in _FLAG_QUEUES:
            raise IsaError(
                f"{insn.op.name} runs on the {stage.name.lower()} stage, which has no "
                f"{flag.split('_')[1]} neighbour: clear {flag}"
            )
    if insn.op in (Opcode.LOAD, Opcode.STORE):
        _check_mem(insn)
    elif insn.op in (Opcode.GEMM, Opcode.ALU):
        if insn.uop_end < insn.uop_bgn:
            raise IsaError(f"{insn.op.name} uop_end {insn.uop_end} < uop_bgn {insn.uop_bgn}")
        if insn.uop_end > cfg.uop_depth:
            raise IsaError(
                f"{insn.op.name} uop_end {insn.uop_end} exceeds the uop buffer depth "
                f"{cfg.uop_depth}"
            )
        if insn.op == Opcode.ALU:
            _check_alu(insn, cfg)


def _check_alu(insn: Insn, cfg: HwConfig) -> None:
    if insn.alu_op not in AluOp._value2member_map_:
        raise IsaError(
            f"ALU op {insn.alu_op} does not exist; ops are "
            f"{', '.join(f'{o.name}={o.value}' for o in AluOp)}"
        )
    if insn.alu_op == AluOp.MULR:
        # MULR's operand is always ACC[src]; its immediate field holds the shift.
        if insn.use_imm:
            raise IsaError("ALU MULR multiplies by ACC[src]: set use_imm to 0")
        top = mulr_max_shift(cfg.acc_bits)
        if not 0 <= insn.imm <= top:
            raise IsaError(f"ALU MULR shift imm={insn.imm} is outside [0, {top}]")
    elif insn.alu_op == AluOp.CLIP:
        if not insn.use_imm:
            raise IsaError("ALU CLIP takes its bounds from the immediate: set use_imm to 1")
    elif not insn.use_imm and insn.imm:
        raise IsaError(f"ALU imm={insn.imm} is ignored when use_imm=0: set imm to 0")


def _check_mem(insn: Insn) -> None:
    pads = insn.y_pad_0 or insn.y_pad_1 or insn.x_pad_0 or insn.x_pad_1
    if insn.mem_type not in MemType._value2member_map_:
        raise IsaError(
            f"{insn.op.name} memory type {insn.mem_type} does not exist; types are "
            f"{', '.join(f'{m.name}={m.value}' for m in MemType)}"
        )
    mem = insn.mem
    if insn.op == Opcode.STORE:
        if mem != MemType.OUT:
            raise IsaError(f"STORE writes only OUT to DRAM, not {mem.name}")
        if pads:
            raise IsaError("STORE cannot pad: set y_pad_0, y_pad_1, x_pad_0 and x_pad_1 to 0")
        return
    if mem == MemType.OUT:
        raise IsaError("LOAD cannot write OUT (it mirrors ACC); load ACC instead")
    if mem == MemType.UOP and pads:
        raise IsaError("LOAD UOP cannot pad: set y_pad_0, y_pad_1, x_pad_0 and x_pad_1 to 0")


def _pack(fmt: Format, values: dict[str, int], what: str) -> int:
    word = 0
    for f in fmt.fields:
        value = values[f.name]
        if not f.min <= value <= f.max:
            raise IsaError(
                f"{what} field {f.name}={value} is out of range [{f.min}, {f.max}] "
                f"({f.width} bits{', signed' if f.signed else ''})"
            )
        word |= (value & ((1 << f.width) - 1)) << f.offset
    return word


def _unpack(fmt: Format, word: int) -> dict[str, int]:
    values = {}
    for f in fmt.fields:
        value = (word >> f.offset) & ((1 << f.width) - 1)
        if f.signed and value >> (f.width - 1):
            value -= 1 << f.width
        values[f.name] = value
    return values


def encode(insn: Insn, cfg: HwConfig) -> int:
    """Pack an instruction into an INSN_BITS-wide integer after checking every field."""
    check(insn, cfg)
    return _pack(cfg.insn_formats[insn.op], {"opcode": int(insn.op)} | insn.fields(), insn.op.name)


def decode(word: int, cfg: HwConfig) -> Insn:
    """Unpack an INSN_BITS-wide integer; raise IsaError for unknown opcodes or illegal fields."""
    if not 0 <= word < 1 << INSN_BITS:
        raise IsaError(f"instruction word {word:#x} is wider than {INSN_BITS} bits")
    opcode = word & 0b111
    if opcode not in Opcode._value2member_map_:
        raise IsaError(
            f"opcode {opcode} does not exist; opcodes are "
            f"{', '.join(f'{o.name}={o.value}' for o in Opcode)}"
        )
    fmt = cfg.insn_formats[Opcode(opcode)]
    if word >> fmt.used_bits:
        raise IsaError(f"{fmt.name} word {word:#034x} has bits set above bit {fmt.used_bits - 1}")
    values = _unpack(fmt, word)
    del values["opcode"]
    insn = Insn(Opcode(opcode), **values)
    check(insn, cfg)
    return insn


def encode_stream(insns: list[Insn], cfg: HwConfig) -> bytes:
    """Instructions as little-endian INSN_BYTES-byte words, in order (the DRAM image)."""
    out = bytearray()
    for index, insn in enumerate(insns):
        try:
            out += encode(insn, cfg).to_bytes(INSN_BYTES, "little")
        except IsaError as exc:
            raise IsaError(f"instruction {index}: {exc}") from None
    return bytes(out)


def decode_stream(data: bytes, cfg: HwConfig) -> list[Insn]:
    """Inverse of encode_stream; the length must be a whole number of instructions."""
    if len(data) % INSN_BYTES:
        raise IsaError(
            f"instruction stream of {len(data)} bytes is not a multiple of {INSN_BYTES}"
        )
    insns = []
    for index in range(len(data) // INSN_BYTES):
        word = int.from_bytes(data[index * INSN_BYTES : (index + 1) * INSN_BYTES], "little")
        try:
            insns.append(decode(word, cfg))
        except IsaError as exc:
            raise IsaError(f"instruction {index}: {exc}") from None
    return insns


def encode_uop(uop: Uop, cfg: HwConfig) -> int:
    """Pack a micro-op into a UOP_BITS-wide integer after range-checking its indices."""
    return _pack(cfg.uop_format, uop._asdict(), "uop")


def decode_uop(word: int, cfg: HwConfig) -> Uop:
    """Unpack a UOP_BITS-wide integer."""
    fmt = cfg.uop_format
    if not 0 <= word < 1 << fmt.word_bits or word >> fmt.used_bits:
        raise IsaError(f"uop word {word:#x} has bits set above bit {fmt.used_bits - 1}")
    return Uop(**_unpack(fmt, word))


def decode_uop_array(words: np.ndarray, cfg: HwConfig) -> tuple[np.ndarray, ...]:
    """Vectorized decode of uop words into (dst, src, wgt) index arrays."""
    words = words.astype(np.int64)
    fmt = cfg.uop_format
    if words.size and (words >> fmt.used_bits).any():
        raise IsaError(f"uop word has bits set above bit {fmt.used_bits - 1}")
    return tuple(
        (words >> f.offset) & ((1 << f.width) - 1) for f in cfg.uop_format.fields
    )
