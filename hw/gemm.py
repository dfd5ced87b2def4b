"""The GEMM core: BATCH x BLOCK_OUT dot products of length BLOCK_IN, one new pair per cycle.

Pipeline (`GemmCore.latency` cycles from `valid` to `valid_out`, never stalls):

1. input registers (the SRAM outputs land in flip-flops, or in the DSPs' A/B registers);
2. product registers, one per multiplier (the DSPs' M/P registers);
3. an adder tree of log2(block_in) levels with a register after every `ADDER_LEVELS_PER_STAGE`
   levels and after the last one.

With `HwConfig.lut_multipliers` each product is shifted partial products and adders
(`lut_product`) instead of `*`, so Yosys maps it to LUTs and leaves the DSP blocks to the ALU.

Sums are exact (`sum_bits` = inp_bits + wgt_bits + log2(block_in)); the caller wraps them to
acc_bits when it accumulates.
"""

from __future__ import annotations

import math
import operator

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hw.layouts import elem_layout
from isa.config import HwConfig

# Two levels of narrow adders fit one FPGA clock period comfortably next to a product register.
ADDER_LEVELS_PER_STAGE = 2


def lut_product(a, b):
    """a * b for signed a and b as shifted partial products and adders: no `*`, so synthesis
    builds it from LUTs instead of a DSP block. a's top bit weighs -2**(n-1) (two's complement)."""
    n = len(a)
    width = n + len(b)
    rows = [Mux(a[i], b.as_signed(), 0).as_signed() << i for i in range(n - 1)]
    total = sum(rows[1:], rows[0]) if rows else 0
    return (total - (Mux(a[n - 1], b.as_signed(), 0).as_signed() << (n - 1)))[:width].as_signed()


def _register(m: Module, value, name: str):
    """A flip-flop stage holding `value` (a Value or a View), with the same shape."""
    reg = Signal(value.shape(), name=name)
    m.d.sync += reg.eq(value)
    return reg


class GemmCore(wiring.Component):
    """Fully pipelined batch x block_in x block_out integer matrix-vector products."""

    def __init__(self, cfg: HwConfig):
        if not isinstance(cfg, HwConfig):
            raise TypeError(f"cfg must be an HwConfig, not {cfg!r}")
        self.cfg = cfg
        self._tree_levels = cfg.block_in.bit_length() - 1
        #: Bits of one exact dot product.
        self.sum_bits = cfg.inp_bits + cfg.wgt_bits + self._tree_levels
        #: Cycles from an input pair with `valid` to its `sums` with `valid_out`.
        self.latency = 2 + math.ceil(self._tree_levels / ADDER_LEVELS_PER_STAGE)
        super().__init__({
            "inp": In(elem_layout(cfg, "inp")),
            "wgt": In(elem_layout(cfg, "wgt")),
            "valid": In(1),
            "sums": Out(data.ArrayLayout(signed(self.sum_bits), cfg.batch * cfg.block_out)),
            "valid_out": Out(1),
        })

    def elaborate(self, platform):
        """Multipliers, registered products and the pipelined adder tree."""
        m = Module()
        cfg = self.cfg
        inp = _register(m, self.inp, "inp_r")
        wgt = _register(m, self.wgt, "wgt_r")

        for b in range(cfg.batch):
            for o in range(cfg.block_out):
                multiply = lut_product if cfg.lut_multipliers else operator.mul
                terms = [
                    _register(m, multiply(inp[b * cfg.block_in + i], wgt[o * cfg.block_in + i]),
                              f"prod_{b}_{o}_{i}")
                    for i in range(cfg.block_in)
                ]
                for level in range(1, self._tree_levels + 1):
                    terms = [terms[n] + terms[n + 1] for n in range(0, len(terms), 2)]
                    if level % ADDER_LEVELS_PER_STAGE == 0 or level == self._tree_levels:
                        terms = [_register(m, t, f"sum_{b}_{o}_l{level}_{n}")
                                 for n, t in enumerate(terms)]
                m.d.comb += self.sums[b * cfg.block_out + o].eq(terms[0])

        valid = self.valid
        for stage in range(self.latency):
            valid = _register(m, valid, f"valid_{stage}")
        m.d.comb += self.valid_out.eq(valid)
        return m
