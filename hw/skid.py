"""A two-entry register slice for `lib.stream`: cuts every combinational path between its sides."""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out


class SkidBuffer(wiring.Component):
    """A two-entry register slice: full throughput and no combinational path between its sides.

    `o.valid`, `o.payload` and `i.ready` are registers; a payload taken on `i` appears on `o` one
    cycle later at the earliest. `empty` is high when the slice holds nothing.
    """

    def __init__(self, shape):
        self._shape = shape
        super().__init__({
            "i": In(stream.Signature(shape)),
            "o": Out(stream.Signature(shape)),
            "empty": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        # `spare` catches the payload accepted in the cycle the output stalled, so `i.ready` can
        # be a register instead of a copy of `o.ready`.
        spare = Signal(self._shape)
        spare_valid = Signal()
        m.d.comb += [self.i.ready.eq(~spare_valid), self.empty.eq(~self.o.valid & ~spare_valid)]
        with m.If(~self.o.valid | self.o.ready):
            with m.If(spare_valid):
                m.d.sync += [self.o.payload.eq(spare), spare_valid.eq(0)]
            with m.Else():
                m.d.sync += [self.o.valid.eq(self.i.valid), self.o.payload.eq(self.i.payload)]
        with m.Elif(self.i.valid & self.i.ready):
            m.d.sync += [spare.eq(self.i.payload), spare_valid.eq(1)]
        return m
