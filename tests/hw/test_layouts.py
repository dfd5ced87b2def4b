"""The RTL's data layouts agree bit for bit with the ISA encoder."""

import random

import numpy as np
import pytest
from amaranth.lib import data

from hw.interfaces import DramRequest
from hw.layouts import elem_layout, insn_layouts, uop_layout
from isa import AluOp, Insn, MemType, Opcode, Uop, encode, load_config
from isa.instructions import encode_uop
from isa.packing import pack_elements

PRESETS = ["small", "default", "int4", "nonsquare"]


@pytest.mark.parametrize("preset", PRESETS)
def test_insn_layouts_match_encoder(preset):
    cfg = load_config(preset)
    layouts = insn_layouts(cfg)
    rng = random.Random(1)
    samples = [
        Insn(Opcode.LOAD, mem_type=MemType.INP, sram_base=3, dram_base=rng.randrange(1 << 32),
             y_size=7, x_size=9, x_stride=11, y_pad_0=1, x_pad_1=15, push_next=1),
        Insn(Opcode.GEMM, uop_bgn=1, uop_end=5, iter_out=9, iter_in=3, dst_factor_out=2,
             src_factor_in=1, wgt_factor_out=3, reset=1, pop_prev=1),
        Insn(Opcode.ALU, uop_end=2, iter_out=4, iter_in=1, alu_op=AluOp.RSHR, use_imm=1, imm=-7),
        Insn(Opcode.FINISH, pop_next=1),
    ]
    for insn in samples:
        const = layouts[insn.op].const({"opcode": int(insn.op), **insn.fields()})
        assert const.as_bits() == encode(insn, cfg), insn


@pytest.mark.parametrize("preset", PRESETS)
def test_uop_and_element_layouts(preset):
    cfg = load_config(preset)
    uop = Uop(3, 2, 1)
    assert uop_layout(cfg).const(uop._asdict()).as_bits() == encode_uop(uop, cfg)
    for kind in ("inp", "wgt", "acc", "out"):
        layout = elem_layout(cfg, kind)
        assert layout.size == cfg.elem_bits(kind)
        values = [(-1) ** i * (i % (1 << (cfg.lane_bits(kind) - 1))) for i in range(layout.length)]
        shaped = np.array(values).reshape(1, *cfg.elem_shape(kind))
        packed = pack_elements(shaped, cfg, kind)
        assert layout.const(values).as_bits() == int.from_bytes(packed, "little")



def test_dram_request_has_its_fields():
    # `from __future__ import annotations` would silently empty a data.Struct's layout.
    assert data.Layout.cast(DramRequest).size == 32 + 24
