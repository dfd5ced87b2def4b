"""The tensor ALU: one AluOp applied lane by lane to two ACC elements, exactly as isa.semantics.

Inputs are registered (the ACC SRAM output and the multipliers' input registers), every op is
computed from them and the selected result is registered: `TensorAlu.latency` is 2 cycles from
`valid` to `valid_out`, one new operation per cycle, no stalls. `y` is always an ACC element:
an ALU immediate is sign-extended and broadcast to every lane by the caller. While `keep_y` is
high the y register holds its value instead (the caller's cache of a reused ACC source row). An
op code outside AluOp (7) returns `x` unchanged.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.layouts import elem_layout
from isa.config import HwConfig
from isa.formats import ALU_OP_BITS, AluOp


class TensorAlu(wiring.Component):
    """Lane-wise MIN, MAX, ADD, SHR, MUL, RSHR and MOV over the batch x block_out ACC lanes."""

    #: Cycles from `valid` to the matching `valid_out`.
    latency = 2

    def __init__(self, cfg: HwConfig):
        if not isinstance(cfg, HwConfig):
            raise TypeError(f"cfg must be an HwConfig, not {cfg!r}")
        self.cfg = cfg
        lanes = elem_layout(cfg, "acc")
        super().__init__({
            "x": In(lanes),
            "y": In(lanes),
            "keep_y": In(1),
            "op": In(ALU_OP_BITS),
            "valid": In(1),
            "result": Out(lanes),
            "valid_out": Out(1),
        })

    def elaborate(self, platform):
        """Input registers, every op of every lane, the op select and the result register."""
        m = Module()
        bits = self.cfg.acc_bits
        x = Signal(self.x.shape())
        y = Signal(self.y.shape())
        op = Signal.like(self.op)
        valid = Signal()
        result = Signal(self.result.shape())
        m.d.sync += [x.eq(self.x), op.eq(self.op), valid.eq(self.valid)]
        with m.If(~self.keep_y):
            m.d.sync += y.eq(self.y)
        m.d.sync += self.valid_out.eq(valid)
        m.d.comb += self.result.eq(result)

        for lane in range(self.x.shape().length):
            xl, yl, out = x[lane], y[lane], result[lane]
            # The shift amount n = y clamped to [-bits, bits], split into its two directions.
            right = Signal(range(bits + 1), name=f"right_{lane}")
            left = Signal(range(bits + 1), name=f"left_{lane}")
            m.d.comb += [
                right.eq(Mux(yl > bits, bits, Mux(yl > 0, yl, 0))),
                left.eq(Mux(yl < -bits, bits, Mux(yl < 0, -yl, 0))),
            ]
            # RSHR by n > 0 is x >> (n - 1) plus the last bit that x >> n drops: rounding half up
            # without the overflow of x + 2**(n-1).
            rounding = Signal(name=f"rounding_{lane}")
            amount = Signal(range(bits + 1), name=f"amount_{lane}")
            shifted = Signal(xl.shape(), name=f"shifted_{lane}")
            m.d.comb += [
                rounding.eq((op == AluOp.RSHR) & (right != 0)),
                amount.eq(right - rounding),
                shifted.eq(xl >> amount),
            ]
            with m.Switch(op):
                with m.Case(AluOp.MIN):
                    m.d.sync += out.eq(Mux(xl < yl, xl, yl))
                with m.Case(AluOp.MAX):
                    m.d.sync += out.eq(Mux(xl > yl, xl, yl))
                with m.Case(AluOp.ADD):
                    m.d.sync += out.eq(xl + yl)
                with m.Case(AluOp.MUL):
                    m.d.sync += out.eq(xl * yl)
                with m.Case(AluOp.SHR, AluOp.RSHR):
                    rounded = Mux(rounding, (shifted >> 1) + shifted[0], shifted)
                    m.d.sync += out.eq(Mux(yl < 0, xl << left, rounded))
                with m.Case(AluOp.MOV):
                    m.d.sync += out.eq(yl)
                with m.Default():
                    m.d.sync += out.eq(xl)
        return m
