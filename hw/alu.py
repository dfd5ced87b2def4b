"""The tensor ALU: one AluOp applied lane by lane to two ACC elements, exactly as isa.semantics.

Inputs are registered (the ACC SRAM output and the multipliers' input registers), every op is
computed from them and the selected result is registered: `TensorAlu.latency` is 2 cycles from
`valid` to `valid_out`, one new operation per cycle, no stalls. `y` is always an ACC element:
an ALU immediate is sign-extended and broadcast to every lane by the caller. While `keep_y` is
high the y register holds its value instead (the caller's cache of a reused ACC source row).
`shift` is MULR's shift (the instruction's immediate field), registered with `op`. An op code
outside AluOp (9 to 15) returns `x` unchanged.

Each lane has one multiplier, acc_bits x acc_bits, shared by MUL (its low acc_bits) and MULR (y
narrowed to its signed low 16 bits, so the product fits acc_bits + 16 bits), and one barrel
shifter of acc_bits + 16 bits shared by SHR, RSHR (x sign-extended) and MULR (the product).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.layouts import elem_layout
from isa.config import HwConfig
from isa.formats import ALU_OP_BITS, AluOp
from isa.semantics import MULR_MULT_BITS, mulr_max_shift


class TensorAlu(wiring.Component):
    """Lane-wise MIN, MAX, ADD, SHR, MUL, RSHR, MOV, MULR and CLIP over the ACC lanes."""

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
            "shift": In(range(mulr_max_shift(cfg.acc_bits) + 1)),
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
        shift = Signal.like(self.shift)
        valid = Signal()
        result = Signal(self.result.shape())
        m.d.sync += [x.eq(self.x), op.eq(self.op), shift.eq(self.shift), valid.eq(self.valid)]
        mulr = op == AluOp.MULR
        wide = bits + MULR_MULT_BITS
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
            # One multiplier for MUL and MULR; MULR's operand is y's signed low 16 bits, so its
            # exact product fits `wide` bits.
            operand = Signal(yl.shape(), name=f"operand_{lane}")
            product = Signal(signed(2 * bits), name=f"product_{lane}")
            m.d.comb += [
                operand.eq(Mux(mulr, yl[:MULR_MULT_BITS].as_signed(), yl)),
                product.eq(xl * operand),
            ]
            # A rounding shift by n > 0 is v >> (n - 1) plus the last bit that v >> n drops:
            # rounding half up without the overflow of v + 2**(n-1). v is MULR's product, or x.
            # The result wraps to `bits`, so only the low bits + 1 of v >> (n - 1) matter.
            rounding = Signal(name=f"rounding_{lane}")
            amount = Signal(range(wide), name=f"amount_{lane}")
            shifted = Signal(signed(bits + 1), name=f"shifted_{lane}")
            m.d.comb += [
                rounding.eq(Mux(mulr, shift != 0, (op == AluOp.RSHR) & (right != 0))),
                amount.eq(Mux(mulr, shift, right) - rounding),
                shifted.eq(Mux(mulr, product[:wide].as_signed(), xl) >> amount),
            ]
            rounded = Mux(rounding, (shifted >> 1) + shifted[0], shifted)
            # CLIP's bounds are the signed bytes of the (immediate) y. Its result min(max(x, lo),
            # hi) lies in [min(lo, hi), hi], so it is a signed byte: only the selects are wide.
            lo, hi = yl[:8].as_signed(), yl[8:16].as_signed()
            below = Signal(name=f"below_{lane}")
            clipped = Signal(signed(8), name=f"clipped_{lane}")
            m.d.comb += [
                below.eq(xl < lo),
                clipped.eq(Mux(Mux(below, lo > hi, xl > hi), hi, Mux(below, lo, xl[:8]))),
            ]
            with m.Switch(op):
                with m.Case(AluOp.MIN):
                    m.d.sync += out.eq(Mux(xl < yl, xl, yl))
                with m.Case(AluOp.MAX):
                    m.d.sync += out.eq(Mux(xl > yl, xl, yl))
                with m.Case(AluOp.ADD):
                    m.d.sync += out.eq(xl + yl)
                with m.Case(AluOp.MUL):
                    m.d.sync += out.eq(product)
                with m.Case(AluOp.SHR, AluOp.RSHR):
                    m.d.sync += out.eq(Mux(yl < 0, xl << left, rounded))
                with m.Case(AluOp.MOV):
                    m.d.sync += out.eq(yl)
                with m.Case(AluOp.MULR):
                    m.d.sync += out.eq(rounded)
                with m.Case(AluOp.CLIP):
                    m.d.sync += out.eq(clipped)
                with m.Default():
                    m.d.sync += out.eq(xl)
        return m
