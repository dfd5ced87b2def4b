"""The dependency-token protocol every stage shares: start when tokens allow, push on completion.

A stage presents the dependency flags of the instruction at the head of its queue. `TokenGate`
raises `start` (for one cycle, popping the queues named by the pop flags) once every queue it pops
holds a token and every queue it pushes has room, keeps `busy` until the stage reports
`complete`, then pushes. Flags that name a neighbour the stage does not have are ignored (the
assembler and `isa.instructions.check` reject them).
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

SIDES = ("prev", "next")


class TokenGate(wiring.Component):
    """Token handshake of one stage with its previous and/or next neighbour."""

    def __init__(self, *, has_prev: bool, has_next: bool):
        self.sides = tuple(s for s, has in zip(SIDES, (has_prev, has_next), strict=True) if has)
        members = {
            "valid": In(1),
            "complete": In(1),
            "start": Out(1),
            "busy": Out(1),
            "stall": Out(1),
        }
        for flag in ("pop_prev", "pop_next", "push_prev", "push_next"):
            members[flag] = In(1)
        for side in self.sides:
            members[f"{side}_can_pop"] = In(1)
            members[f"{side}_can_push"] = In(1)
            members[f"{side}_pop"] = Out(1)
            members[f"{side}_push"] = Out(1)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        ready = Signal(init=1)
        for side in self.sides:
            pop, push = getattr(self, f"pop_{side}"), getattr(self, f"push_{side}")
            with m.If(pop & ~getattr(self, f"{side}_can_pop")):
                m.d.comb += ready.eq(0)
            with m.If(push & ~getattr(self, f"{side}_can_push")):
                m.d.comb += ready.eq(0)

        m.d.comb += [
            self.start.eq(self.valid & ~self.busy & ready),
            self.stall.eq(self.valid & ~self.busy & ~ready),
        ]
        pending = {side: Signal(name=f"push_{side}_pending") for side in self.sides}
        with m.If(self.start):
            m.d.sync += self.busy.eq(1)
            for side in self.sides:
                m.d.comb += getattr(self, f"{side}_pop").eq(getattr(self, f"pop_{side}"))
                m.d.sync += pending[side].eq(getattr(self, f"push_{side}"))
        with m.If(self.busy & self.complete):
            m.d.sync += self.busy.eq(0)
            for side in self.sides:
                m.d.comb += getattr(self, f"{side}_push").eq(pending[side])
        return m
