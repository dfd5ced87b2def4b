"""Cycle-by-cycle models of stream neighbours for Amaranth testbenches.

A testbench first drives every model's inputs for the cycle (`drive`), then samples the settled
outputs to see which handshakes happen at the clock edge (`observe`). Randomness comes from a
seeded `random.Random` passed in, so a failing run can name its seed.
"""

from collections import deque

from hw.interfaces import ADDR_BITS


class Source:
    """Drives a stream from a queue of (due cycle, payload), holding valid until taken."""

    def __init__(self, stream, rng, rate):
        self.stream, self.rng, self.rate = stream, rng, rate
        self.items = deque()
        self.current = None
        self.taken = []  # (cycle, payload)

    def drive(self, ctx, now):
        """Offer the next due item with probability `rate` (an offer is never withdrawn)."""
        if (self.current is None and self.items and self.items[0][0] <= now
                and self.rng.random() < self.rate):
            self.current = self.items.popleft()[1]
        ctx.set(self.stream.valid, self.current is not None)
        if self.current is not None:
            ctx.set(self.stream.payload, self.current)

    def observe(self, ctx, now):
        """Return the payload taken at this cycle's edge, or None."""
        if self.current is None or not ctx.get(self.stream.ready):
            return None
        item, self.current = self.current, None
        self.taken.append((now, item))
        return item


class Sink:
    """Takes a stream with random ready and checks that an offer holds until it is taken."""

    def __init__(self, stream, rng, rate):
        self.stream, self.rng, self.rate = stream, rng, rate
        self.ready = False
        self.offer = None  # payload offered and not taken last cycle
        self.taken = []  # (cycle, payload as an integer)

    def drive(self, ctx, now, allow=True):
        """Raise ready with probability `rate` when `allow`."""
        self.ready = allow and self.rng.random() < self.rate
        ctx.set(self.stream.ready, self.ready)

    def observe(self, ctx, now):
        """Return the payload (an integer) taken at this cycle's edge, or None."""
        valid = ctx.get(self.stream.valid)
        # A structured payload is read as its raw bits, a plain Signal as itself.
        raw = getattr(self.stream.payload, "as_value", lambda: self.stream.payload)()
        payload = ctx.get(raw) if valid else None
        if self.offer is not None:
            assert payload == self.offer, f"cycle {now}: an offer changed or was withdrawn"
        taken = valid and self.ready
        self.offer = payload if valid and not taken else None
        if not taken:
            return None
        self.taken.append((now, payload))
        return payload


class DramReader:
    """Serves a DRAM read port from a byte array: beats follow each request after `latency`."""

    def __init__(self, port, memory, bus_bytes, rng, *, latency, rate):
        self.memory, self.bus_bytes, self.latency = memory, bus_bytes, latency
        self.req = Sink(port.req, rng, rate)
        self.data = Source(port.data, rng, rate)
        self.requests = []  # (addr, beats)

    def drive(self, ctx, now):
        """Drive request ready and the next due beat."""
        self.req.drive(ctx, now)
        self.data.drive(ctx, now)

    def observe(self, ctx, now):
        """Queue the beats of a new request and retire a taken beat."""
        self.data.observe(ctx, now)
        req = self.req.observe(ctx, now)
        if req is None:
            return
        addr, beats = req & ((1 << ADDR_BITS) - 1), req >> ADDR_BITS
        assert addr % self.bus_bytes == 0 and beats >= 1, f"bad request {addr:#x}+{beats}"
        self.requests.append((addr, beats))
        for i in range(beats):
            at = addr + i * self.bus_bytes
            value = int.from_bytes(self.memory[at:at + self.bus_bytes].tobytes(), "little")
            self.data.items.append((now + self.latency, value))
