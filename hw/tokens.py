"""Dependency-token queues between neighbouring stages, as saturating counters.

Tokens carry no data (instructions within a stage run in order), so a queue is a counter of
`depth` tokens: the producer may push only while `can_push`, the consumer pop only while
`can_pop`. Each queue has exactly one producer and one consumer, and a unit checks room when it
starts an instruction and pushes when it completes, so a push never meets a full queue.
"""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


class TokenQueue(wiring.Component):
    """A dependency-token queue of `depth` tokens."""

    def __init__(self, depth: int):
        if depth < 1:
            raise ValueError(f"depth must be at least 1, not {depth}")
        self.depth = depth
        super().__init__({
            "push": In(1),
            "pop": In(1),
            "can_push": Out(1),
            "can_pop": Out(1),
            "count": Out(range(depth + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        with m.If(self.push & ~self.pop):
            m.d.sync += self.count.eq(self.count + 1)
        with m.Elif(self.pop & ~self.push):
            m.d.sync += self.count.eq(self.count - 1)
        m.d.comb += [
            self.can_push.eq(self.count < self.depth),
            self.can_pop.eq(self.count > 0),
        ]
        return m
