"""The tensor ALU: one AluOp applied lane by lane to two ACC elements, exactly as isa.semantics.

Three registered stages, one new operation per cycle, no stalls (`TensorAlu.latency` is 3 cycles
from `valid` to `valid_out`):

1. the inputs (the ACC SRAM output, the multipliers' input registers);
2. per lane, a value v and a right shift: MUL and MULR register the product (MUL with a shift
   of 0), SHR and RSHR register x and the right shift (or x shifted left and 0 when n < 0), and
   every other op registers its finished result and 0 (so the multiplier and the rounding
   shifter lie in different cycles);
3. the result: v shifted right (rounding half up for RSHR and MULR) and wrapped to acc_bits.

`y` is always an ACC element: an ALU immediate is sign-extended and broadcast to every lane by
the caller. While `keep_y` is high the y input register holds its value instead (the caller's
cache of a reused ACC source row). `shift` is MULR's shift (the instruction's immediate field),
registered with `op`. An op code outside AluOp (9 to 15) returns `x` unchanged.

Each lane has one acc_bits x 16 multiplier shared by MUL and MULR (both take y's signed low 16
bits, so the exact product fits acc_bits + 16 bits: two MULT18X18D on an ECP5 at acc_bits 32),
and one barrel shifter of acc_bits + 16 bits shared by SHR, RSHR (x sign-extended) and MULR.
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
    latency = 3

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
        """Input registers, the products and the other ops, the rounding shift, the result."""
        m = Module()
        bits = self.cfg.acc_bits
        wide = bits + MULR_MULT_BITS
        x = Signal(self.x.shape())
        y = Signal(self.y.shape())
        op = Signal.like(self.op)
        shift = Signal.like(self.shift)
        valid = Signal()
        valid_2 = Signal()
        result = Signal(self.result.shape())
        m.d.sync += [x.eq(self.x), op.eq(self.op), shift.eq(self.shift), valid.eq(self.valid)]
        with m.If(~self.keep_y):
            m.d.sync += y.eq(self.y)
        m.d.sync += [valid_2.eq(valid), self.valid_out.eq(valid_2)]
        m.d.comb += self.result.eq(result)
        mul = op == AluOp.MUL
        mulr = op == AluOp.MULR
        shr = (op == AluOp.SHR) | (op == AluOp.RSHR)

        for lane in range(self.x.shape().length):
            xl, yl = x[lane], y[lane]
            # -- stage 2: v, the right shift and whether it rounds -----------------------------
            # The shift amount n = y clamped to [-bits, bits], split into its two directions.
            right = Signal(range(bits + 1), name=f"right_{lane}")
            left = Signal(range(bits + 1), name=f"left_{lane}")
            m.d.comb += [
                right.eq(Mux(yl > bits, bits, Mux(yl > 0, yl, 0))),
                left.eq(Mux(yl < -bits, bits, Mux(yl < 0, -yl, 0))),
            ]
            product = Signal(signed(wide), name=f"product_{lane}")
            m.d.comb += product.eq(xl * yl[:MULR_MULT_BITS].as_signed())
            # The ops that need no right shift finish here. CLIP's bounds are the signed bytes
            # of the (immediate) y; its result min(max(x, lo), hi) lies in [min(lo, hi), hi],
            # so it is a signed byte: only the selects are wide.
            lo, hi = yl[:8].as_signed(), yl[8:16].as_signed()
            below = Signal(name=f"below_{lane}")
            clipped = Signal(signed(8), name=f"clipped_{lane}")
            m.d.comb += [
                below.eq(xl < lo),
                clipped.eq(Mux(Mux(below, lo > hi, xl > hi), hi, Mux(below, lo, xl[:8]))),
            ]
            done = Signal(signed(bits), name=f"done_{lane}")
            with m.Switch(op):
                with m.Case(AluOp.MIN):
                    m.d.comb += done.eq(Mux(xl < yl, xl, yl))
                with m.Case(AluOp.MAX):
                    m.d.comb += done.eq(Mux(xl > yl, xl, yl))
                with m.Case(AluOp.ADD):
                    m.d.comb += done.eq(xl + yl)
                with m.Case(AluOp.SHR, AluOp.RSHR):
                    m.d.comb += done.eq(xl << left)  # x itself when n >= 0, shifted next
                with m.Case(AluOp.MOV):
                    m.d.comb += done.eq(yl)
                with m.Case(AluOp.CLIP):
                    m.d.comb += done.eq(clipped)
                with m.Default():
                    m.d.comb += done.eq(xl)
            # A rounding shift by n > 0 is v >> (n - 1) plus the last bit that v >> n drops:
            # rounding half up without the overflow of v + 2**(n-1).
            v = Signal(signed(wide), name=f"v_{lane}")
            amount = Signal(range(wide), name=f"amount_{lane}")
            rounding = Signal(name=f"rounding_{lane}")
            rounds = Mux(mulr, shift != 0, (op == AluOp.RSHR) & (right != 0))
            m.d.sync += [
                v.eq(Mux(mul | mulr, product, done)),
                rounding.eq(rounds),
                amount.eq(Mux(mulr, shift, Mux(shr, right, 0)) - rounds),
            ]
            # -- stage 3: the shift; the result wraps to `bits`, so only the low bits + 1 of
            # v >> (n - 1) matter ---------------------------------------------------------------
            shifted = Signal(signed(bits + 1), name=f"shifted_{lane}")
            m.d.comb += shifted.eq(v >> amount)
            m.d.sync += result[lane].eq(Mux(rounding, (shifted >> 1) + shifted[0], shifted))
        return m
