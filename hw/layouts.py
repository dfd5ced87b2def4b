"""Amaranth data layouts built from the ISA's field tables: the RTL never hand-copies bit positions.

Each instruction format becomes a `data.StructLayout` whose members are the table's fields in bit
order, so a 128-bit instruction word viewed through it decodes exactly as `isa.decode` does.
"""

from __future__ import annotations

from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from isa.config import HwConfig
from isa.formats import Format, Opcode


def struct_layout(fmt: Format) -> data.StructLayout:
    """A StructLayout with one member per field of a format, LSB-first."""
    return data.StructLayout(
        {f.name: (signed if f.signed else unsigned)(f.width) for f in fmt.fields}
    )


def insn_layouts(cfg: HwConfig) -> dict[Opcode, data.StructLayout]:
    """The layout of every instruction format of a config."""
    return {op: struct_layout(fmt) for op, fmt in cfg.insn_formats.items()}


def insn_view(cfg: HwConfig, op: Opcode, word) -> data.View:
    """View an INSN_BITS-wide word through one format's layout (its unused top bits dropped)."""
    layout = insn_layouts(cfg)[op]
    return data.View(layout, word[: layout.size])


def uop_layout(cfg: HwConfig) -> data.StructLayout:
    """The layout of a micro-op of a config."""
    return struct_layout(cfg.uop_format)


def elem_layout(cfg: HwConfig, kind: str) -> data.ArrayLayout:
    """One buffer element (inp, wgt, acc or out) as an array of signed lanes, row-major."""
    lanes = 1
    for n in cfg.elem_shape(kind):
        lanes *= n
    return data.ArrayLayout(signed(cfg.lane_bits(kind)), lanes)
