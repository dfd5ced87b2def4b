# amaranth: UnusedElaboratable=no
"""The 2-D DMA engines against numpy LOAD/STORE references, with DRAM and SRAM models in the loop.

Every cycle the testbench first drives all engine inputs (chosen without looking at the engine's
outputs in that cycle), then samples the settled outputs to see which handshakes happen at the
clock edge. Randomness comes from one seeded `random.Random` per test; a failure names its seed.
The first line silences Amaranth's unused-elaboratable warning for the engines that
test_rejects_bad_geometry half-builds on purpose.
"""

import itertools
import random
from collections import deque

import numpy as np
import pytest
from amaranth.sim import Simulator
from stream_models import DramReader, Sink, Source

from hw.dma import ReadEngine2D, WriteEngine2D
from hw.interfaces import ADDR_BITS

SRAM_ADDR_BITS = 7
SRAM_DEPTH = 1 << SRAM_ADDR_BITS

# (elem_bits, bus_bits): narrow elements sharing a beat, one element per beat, wide elements
# spanning 2, 3 and 4 beats.
GEOMETRIES = [(32, 64), (16, 128), (32, 32), (64, 32), (96, 32), (512, 128)]
RANDOM_CMDS = 40


class _DramWriter:
    """Takes a DRAM write port into a byte array, applying strobes; pulses `done` per request.

    A beat is accepted only once its request is, like an interconnect that needs the address
    first; `done` follows a request's last beat by a random 1 to 4 cycles.
    """

    def __init__(self, port, memory, bus_bytes, rng, *, rate):
        self.port, self.memory, self.bus_bytes, self.rng = port, memory, bus_bytes, rng
        self.req = Sink(port.req, rng, rate)
        self.data = Sink(port.data, rng, rate)
        self.open = deque()  # [addr, beats, beats received] of accepted requests
        self.done_at = deque()
        self.requests = []
        self.dones = 0

    def drive(self, ctx, now):
        """Drive both readies and `done`."""
        self.req.drive(ctx, now)
        self.data.drive(ctx, now, allow=bool(self.open))
        self.pulse = bool(self.done_at) and self.done_at[0] <= now
        ctx.set(self.port.done, self.pulse)

    def observe(self, ctx, now):
        """Record a request, apply a beat's enabled bytes, retire a `done` pulse."""
        req = self.req.observe(ctx, now)
        if req is not None:
            addr, beats = req & ((1 << ADDR_BITS) - 1), req >> ADDR_BITS
            assert addr % self.bus_bytes == 0 and beats >= 1, f"bad request {addr:#x}+{beats}"
            self.requests.append((addr, beats))
            self.open.append([addr, beats, 0])
        beat = self.data.observe(ctx, now)
        if beat is not None:
            head = self.open[0]
            data, strb = beat & ((1 << 8 * self.bus_bytes) - 1), beat >> 8 * self.bus_bytes
            base = head[0] + head[2] * self.bus_bytes
            for i, byte in enumerate(data.to_bytes(self.bus_bytes, "little")):
                if strb >> i & 1:
                    self.memory[base + i] = byte
            head[2] += 1
            if head[2] == head[1]:
                self.open.popleft()
                last = self.done_at[-1] if self.done_at else now
                self.done_at.append(max(last, now) + self.rng.randint(1, 4))
        if self.pulse:
            self.done_at.popleft()
            self.dones += 1


class _SramReader:
    """A synchronous read port in front of a list: `data` follows an enabled address by a cycle."""

    def __init__(self, port, memory, rng):
        self.port, self.memory = port, memory
        self.value = rng.getrandbits(len(port.data))  # junk until the first read

    def drive(self, ctx, now):
        """Present the value read at the last enabled edge."""
        ctx.set(self.port.data, self.value)

    def observe(self, ctx, now):
        """Read on an enabled edge; a disabled port holds its data."""
        if ctx.get(self.port.en):
            self.value = self.memory[ctx.get(self.port.addr)]


def _transfer(*, sram_base=0, dram_addr=0, stride_bytes=0, y_size=0, x_size=0, y_pad_0=0,
              y_pad_1=0, x_pad_0=0, x_pad_1=0):
    return dict(sram_base=sram_base, dram_addr=dram_addr, stride_bytes=stride_bytes,
                y_size=y_size, x_size=x_size, y_pad_0=y_pad_0, y_pad_1=y_pad_1, x_pad_0=x_pad_0,
                x_pad_1=x_pad_1)


def _has_work(cmd, *, padded):
    rows = cmd["y_size"] + (cmd["y_pad_0"] + cmd["y_pad_1"] if padded else 0)
    return cmd["x_size"] != 0 and rows != 0


def load_reference(dram, cmd, elem_bytes):
    """LOAD per docs/isa.md: the (buffer index, element) sequence a transfer writes."""
    if cmd["x_size"] == 0:
        return []
    rows = np.zeros((cmd["y_size"], cmd["x_size"]), dtype=object)
    for y in range(cmd["y_size"]):
        for x in range(cmd["x_size"]):
            at = cmd["dram_addr"] + y * cmd["stride_bytes"] + x * elem_bytes
            rows[y, x] = int.from_bytes(dram[at:at + elem_bytes].tobytes(), "little")
    pads = ((cmd["y_pad_0"], cmd["y_pad_1"]), (cmd["x_pad_0"], cmd["x_pad_1"]))
    values = np.pad(rows, pads, constant_values=0).ravel()
    return [((cmd["sram_base"] + i) % SRAM_DEPTH, int(v)) for i, v in enumerate(values)]


def store_reference(dram, sram, cmd, elem_bytes):
    """STORE per docs/isa.md, applied to `dram` in place."""
    for y in range(cmd["y_size"]):
        for x in range(cmd["x_size"]):
            at = cmd["dram_addr"] + y * cmd["stride_bytes"] + x * elem_bytes
            value = sram[(cmd["sram_base"] + y * cmd["x_size"] + x) % SRAM_DEPTH]
            dram[at:at + elem_bytes] = np.frombuffer(value.to_bytes(elem_bytes, "little"),
                                                     np.uint8)


def row_requests(cmd, elem_bytes, bus_bytes):
    """The DRAM request of every data row: aligned address and beats covering the row."""
    if cmd["x_size"] == 0:
        return []
    requests = []
    for y in range(cmd["y_size"]):
        row = cmd["dram_addr"] + y * cmd["stride_bytes"]
        lead = row % bus_bytes
        requests.append((row - lead, -(-(lead + cmd["x_size"] * elem_bytes) // bus_bytes)))
    return requests


def _random_transfer(rng, elem_bytes, dram_bytes, *, padded):
    x_size = rng.choice([0, 1, 2, 3, 4, 5, 7]) if rng.random() < 0.9 else 0
    y_size = rng.randrange(4)
    x_stride = x_size + rng.randrange(4)
    if padded and rng.random() < 0.2:
        x_stride = 0  # a LOAD may repeat one row (bias broadcast)
    footprint = (max(y_size - 1, 0) * x_stride + x_size) * elem_bytes
    dram_base = rng.randrange((dram_bytes - footprint) // elem_bytes + 1)
    pads = [rng.choice([0, 0, 1, 2]) for _ in range(4)]  # a store must ignore them
    return _transfer(sram_base=rng.randrange(SRAM_DEPTH), dram_addr=dram_base * elem_bytes,
                     stride_bytes=x_stride * elem_bytes, y_size=y_size, x_size=x_size,
                     y_pad_0=pads[0], y_pad_1=pads[1], x_pad_0=pads[2], x_pad_1=pads[3])


def _edge_transfers(elem_bytes):
    """NOPs, only zero rows, every pad at once, and a row starting one element in."""
    return [
        _transfer(sram_base=5, dram_addr=elem_bytes, y_size=2, x_size=0, y_pad_0=1, x_pad_1=2),
        _transfer(sram_base=9, y_size=0, x_size=2, y_pad_0=1, y_pad_1=2, x_pad_0=1, x_pad_1=1),
        _transfer(sram_base=SRAM_DEPTH - 3, dram_addr=elem_bytes, stride_bytes=5 * elem_bytes,
                  y_size=2, x_size=3, y_pad_0=1, y_pad_1=1, x_pad_0=2, x_pad_1=1),
    ]


def _simulate(dut, rng, cmds, models, *, padded, cmd_rate, on_complete, max_cycles):
    """Run `cmds` through `dut`, calling on_complete(k, cycle) when command k finished.

    Command k has finished at the first cycle after its acceptance where `busy` is low; a
    command with work must raise `busy` the cycle after it is accepted. Returns the
    (accepted, completed) cycle of every command.
    """
    source = Source(dut.cmd, rng, cmd_rate)
    source.items.extend((0, cmd) for cmd in cmds)
    cycles = []

    async def testbench(ctx):
        now, waiting = 0, None
        while len(cycles) < len(cmds) or now < cycles[-1][1] + 8:
            assert now < max_cycles, f"no progress after {max_cycles} cycles"
            source.drive(ctx, now)
            for model in models:
                model.drive(ctx, now)
            if waiting is not None:
                k, accepted = waiting
                busy = ctx.get(dut.busy)
                if now == accepted + 1 and _has_work(cmds[k], padded=padded):
                    assert busy, f"busy did not rise for command {k}"
                if not busy:
                    on_complete(k, now)
                    cycles.append((accepted, now))
                    waiting = None
            if source.observe(ctx, now) is not None:
                waiting = (len(cycles), now)
            for model in models:
                model.observe(ctx, now)
            await ctx.tick()
            now += 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return cycles


def run_load(elem_bits, bus_bits, cmds, dram, seed, *, latency, rate, cmd_rate=None):
    """Run LOADs on a ReadEngine2D and check elements, requests and completion against numpy."""
    elem_bytes, bus_bytes = elem_bits // 8, bus_bits // 8
    rng = random.Random(seed)
    dut = ReadEngine2D(elem_bits, SRAM_ADDR_BITS, bus_bits)
    reader = DramReader(dut.dram, dram, bus_bytes, rng, latency=latency, rate=rate)
    sink = Sink(dut.out, rng, rate)
    expected = [load_reference(dram, cmd, elem_bytes) for cmd in cmds]
    ends = np.cumsum([len(e) for e in expected])

    def on_complete(k, now):
        assert len(sink.taken) == ends[k], f"command {k} finished with elements missing"

    try:
        cycles = _simulate(dut, rng, cmds, [reader, sink], padded=True,
                           cmd_rate=rate if cmd_rate is None else cmd_rate,
                           on_complete=on_complete, max_cycles=20_000)
        got = [(v & (SRAM_DEPTH - 1), v >> SRAM_ADDR_BITS) for _, v in sink.taken]
        assert got == [e for exp in expected for e in exp]
        assert reader.requests == [r for cmd in cmds for r in row_requests(cmd, elem_bytes,
                                                                           bus_bytes)]
        assert not reader.data.items and reader.data.current is None, "beats left unread"
    except AssertionError as exc:
        exc.add_note(f"seed={seed} elem_bits={elem_bits} bus_bits={bus_bits}")
        raise
    return cycles, sink.taken


def run_store(elem_bits, bus_bits, cmds, dram, sram, seed, *, rate, cmd_rate=None):
    """Run STOREs on a WriteEngine2D and check DRAM bytes, requests and completion."""
    elem_bytes, bus_bytes = elem_bits // 8, bus_bits // 8
    rng = random.Random(seed)
    dut = WriteEngine2D(elem_bits, SRAM_ADDR_BITS, bus_bits)
    writer = _DramWriter(dut.dram, dram.copy(), bus_bytes, rng, rate=rate)
    models = [writer, _SramReader(dut.sram, sram, rng)]
    expected = dram.copy()
    for cmd in cmds:
        store_reference(expected, sram, cmd, elem_bytes)
    ends = np.cumsum([cmd["y_size"] if cmd["x_size"] else 0 for cmd in cmds])

    def on_complete(k, now):
        assert writer.dones == ends[k], f"command {k} finished before every row's done"

    try:
        cycles = _simulate(dut, rng, cmds, models, padded=False,
                           cmd_rate=rate if cmd_rate is None else cmd_rate,
                           on_complete=on_complete, max_cycles=20_000)
        np.testing.assert_array_equal(writer.memory, expected)
        assert writer.requests == [r for cmd in cmds for r in row_requests(cmd, elem_bytes,
                                                                           bus_bytes)]
        assert not writer.open and not writer.done_at
    except AssertionError as exc:
        exc.add_note(f"seed={seed} elem_bits={elem_bits} bus_bits={bus_bits}")
        raise
    return cycles, writer


def _dram_image(rng, size):
    return np.frombuffer(rng.randbytes(size), np.uint8).copy()


@pytest.mark.parametrize("rate", [0.4, 0.9])
@pytest.mark.parametrize(("elem_bits", "bus_bits"), GEOMETRIES)
def test_load_random_with_backpressure(elem_bits, bus_bits, rate):
    seed = elem_bits * 1000 + bus_bits + int(rate * 10)
    rng = random.Random(seed)
    elem_bytes = elem_bits // 8
    dram = _dram_image(rng, 32 * elem_bytes)
    cmds = _edge_transfers(elem_bytes) + [
        _random_transfer(rng, elem_bytes, len(dram), padded=True) for _ in range(RANDOM_CMDS)
    ]
    run_load(elem_bits, bus_bits, cmds, dram, seed, latency=rng.randint(1, 8), rate=rate)


@pytest.mark.parametrize("rate", [0.4, 0.9])
@pytest.mark.parametrize(("elem_bits", "bus_bits"), GEOMETRIES)
def test_store_random_with_backpressure(elem_bits, bus_bits, rate):
    seed = elem_bits * 1000 + bus_bits + int(rate * 10) + 1
    rng = random.Random(seed)
    elem_bytes = elem_bits // 8
    dram = _dram_image(rng, 32 * elem_bytes)
    sram = [rng.getrandbits(elem_bits) for _ in range(SRAM_DEPTH)]
    cmds = _edge_transfers(elem_bytes) + [
        _random_transfer(rng, elem_bytes, len(dram), padded=False) for _ in range(RANDOM_CMDS)
    ]
    run_store(elem_bits, bus_bits, cmds, dram, sram, seed, rate=rate)


def test_load_long_row_streams_one_element_per_cycle():
    latency, x_size = 6, 48
    cmd = _transfer(sram_base=3, dram_addr=4, y_size=1, x_size=x_size)  # starts at slot 1
    [(accepted, completed)], taken = run_load(32, 64, [cmd], _dram_image(random.Random(7), 256),
                                              7, latency=latency, rate=1.0)
    # Accept, plan the row, issue its request: 2 cycles; then DRAM latency; then 1 per cycle.
    assert taken[0][0] - accepted == 2 + latency
    assert taken[-1][0] - taken[0][0] == x_size - 1
    assert completed - taken[-1][0] == 1


def test_load_rows_overlap_dram_latency():
    latency, rows = 16, 6
    cmd = _transfer(dram_addr=8, stride_bytes=40, y_size=rows, x_size=5)
    [(accepted, completed)], taken = run_load(32, 64, [cmd], _dram_image(random.Random(8), 512),
                                              8, latency=latency, rate=1.0)
    # Later rows' requests leave while earlier rows stream: only the first row waits for DRAM.
    assert completed - accepted == 2 + latency + len(taken)


def test_load_padding_only_runs_one_zero_per_cycle():
    cmd = _transfer(y_size=0, x_size=1, y_pad_0=3, y_pad_1=2, x_pad_0=4, x_pad_1=3)
    [(accepted, completed)], taken = run_load(64, 32, [cmd], _dram_image(random.Random(9), 64),
                                              9, latency=5, rate=1.0)
    assert len(taken) == 5 * 8
    assert completed - accepted == 2 + len(taken)


def test_load_wide_elements_stream_one_beat_per_cycle():
    latency, x_size, beats_per_elem = 4, 6, 4
    cmd = _transfer(y_size=2, x_size=x_size, stride_bytes=8 * 64)
    [(accepted, completed)], _ = run_load(512, 128, [cmd], _dram_image(random.Random(10), 1024),
                                          10, latency=latency, rate=1.0)
    assert completed - accepted == 2 + latency + 2 * x_size * beats_per_elem


@pytest.mark.parametrize(("elem_bits", "bus_bits"), [(32, 64), (16, 128), (64, 64), (128, 64)])
def test_store_streams_one_element_per_cycle(elem_bits, bus_bits):
    elem_bytes, rows, x_size = elem_bits // 8, 3, 8
    rng = random.Random(11)
    sram = [rng.getrandbits(elem_bits) for _ in range(SRAM_DEPTH)]
    cmd = _transfer(sram_base=100, dram_addr=elem_bytes, stride_bytes=11 * elem_bytes,
                    y_size=rows, x_size=x_size)
    [(accepted, completed)], writer = run_store(elem_bits, bus_bits, [cmd],
                                                _dram_image(rng, 64 * elem_bytes), sram, 11,
                                                rate=1.0)
    # Accept, plan the row, read the first element: 2 cycles; then every element of every row
    # in one cycle (a wide one in one cycle per beat), with no gap between rows.
    cycles_per_elem = max(1, elem_bits // bus_bits)
    assert writer.data.taken[-1][0] - accepted == 2 + rows * x_size * cycles_per_elem
    # The model acknowledges 1 to 4 cycles after the last beat; busy falls the cycle after.
    assert 2 <= completed - writer.data.taken[-1][0] <= 5


def test_back_to_back_commands_start_when_busy_falls():
    rng = random.Random(12)
    dram = _dram_image(rng, 256)
    cmds = [_transfer(sram_base=8 * i, dram_addr=32 * i, y_size=1, x_size=8) for i in range(3)]
    sram = [rng.getrandbits(32) for _ in range(SRAM_DEPTH)]
    for cycles in (run_load(32, 64, cmds, dram, 12, latency=2, rate=1.0, cmd_rate=1.0)[0],
                   run_store(32, 64, cmds, dram, sram, 12, rate=1.0, cmd_rate=1.0)[0]):
        for (_, completed), (accepted, _) in itertools.pairwise(cycles):
            assert accepted == completed


@pytest.mark.parametrize("engine", [ReadEngine2D, WriteEngine2D])
@pytest.mark.parametrize(("args", "message"), [
    ((24, 7, 32), "neither divides nor is a multiple"),
    ((12, 7, 32), "elem_bits must be a positive multiple of 8, not 12"),
    ((32, 7, 48), "bus_bits must be a power of two of at least 8, not 48"),
    ((32, 0, 32), "sram_addr_bits must be at least 1, not 0"),
])
def test_rejects_bad_geometry(engine, args, message):
    with pytest.raises(ValueError, match=message):
        engine(*args)
