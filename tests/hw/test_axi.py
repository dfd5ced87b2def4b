# amaranth: UnusedElaboratable=no
# (the parameter checks construct components that fail validation and never elaborate)
"""AxiMaster against the AxiMemory model: splitting, arbitration, routing, acks, errors, speed."""

import random

import pytest
from amaranth.lib.wiring import In
from axi_models import PAGE_BYTES, AxiMemory, simulate

from hw.axi import Axi4Signature, AxiLiteSignature, AxiMaster

BUSES = [32, 64, 128]
MEM_BYTES = 1 << 15


def split(addr: int, beats: int, bus_bytes: int) -> list[tuple[int, int]]:
    """Reference burst splitting: (addr, beats) of each burst of a request."""
    bursts = []
    while beats:
        n = min(beats, 256, (PAGE_BYTES - addr % PAGE_BYTES) // bus_bytes)
        bursts.append((addr, n))
        addr += n * bus_bytes
        beats -= n
    return bursts


def all_bursts(requests, bus_bytes: int) -> list[tuple[int, int]]:
    """Every burst of every request, sorted (clients interleave, so order is not compared)."""
    return sorted(b for addr, beats in requests for b in split(addr, beats, bus_bytes))


async def send(ctx, port, items, rng: random.Random, idle: float):
    """Offer `items` as payloads on stream `port`, idling between them with probability `idle`."""
    for item in items:
        while rng.random() < idle:
            await ctx.tick()
        ctx.set(port.payload, item)
        ctx.set(port.valid, 1)
        await ctx.tick().until(port.ready)
        ctx.set(port.valid, 0)


async def receive(ctx, port, count: int, rng: random.Random, stall: float, cycles=None):
    """Take `count` payloads from stream `port`, stalling with probability `stall` per cycle.

    Appends the cycle (counted from the call) of each transfer to `cycles` if given.
    """
    got = []
    cycle = 0
    while len(got) < count:
        ready = rng.random() >= stall
        ctx.set(port.ready, ready)
        _, _, valid, payload = await ctx.tick().sample(port.valid, port.payload)
        if valid and ready:
            got.append(payload)
            if cycles is not None:
                cycles.append(cycle)
        cycle += 1
    ctx.set(port.ready, 0)
    return got


def requests_of(pairs):
    """DramRequest payloads from (addr, beats) pairs."""
    return [{"addr": addr, "beats": beats} for addr, beats in pairs]


def random_memory(size: int, seed: int) -> bytes:
    """Seeded random memory contents."""
    return random.Random(seed).randbytes(size)


@pytest.mark.parametrize("stall", [0.0, 0.4])
@pytest.mark.parametrize("bus_bits", BUSES)
def test_concurrent_reads(bus_bits, stall):
    b = bus_bits // 8
    rng = random.Random(bus_bits)
    clients = [
        [(0x0100, 1), (PAGE_BYTES - 3 * b, 7), (0x0040, 2)],
        [(0x2000 + 5 * b, 300), (MEM_BYTES - b, 1)],
        [(rng.randrange(0, MEM_BYTES // 2, b), rng.randint(1, 20)) for _ in range(5)],
    ]
    dut = AxiMaster(bus_bits, read_ports=len(clients), max_outstanding=4)
    mem = AxiMemory(dut.axi, MEM_BYTES, read_latency=5, stall=stall, seed=bus_bits)
    mem.write_bytes(0, random_memory(MEM_BYTES, bus_bits))
    got = {}
    benches = []
    for i, pairs in enumerate(clients):
        port = dut.reads[i]

        async def issue(ctx, port=port, pairs=pairs, seed=i):
            await send(ctx, port.req, requests_of(pairs), random.Random(seed), stall)

        async def drain(ctx, port=port, pairs=pairs, i=i):
            count = sum(beats for _, beats in pairs)
            got[i] = await receive(ctx, port.data, count, random.Random(10 + i), stall)

        benches += [issue, drain]
    simulate(dut, benches, background=[mem.run])

    for i, pairs in enumerate(clients):
        expected = [mem.beat(addr + k * b) for addr, beats in pairs for k in range(beats)]
        assert got[i] == expected, f"client {i}"
    assert sorted(mem.ar_log) == all_bursts([p for c in clients for p in c], b)
    assert 2 <= mem.peak_reads <= 4


def test_round_robin_grants_clients_in_turn():
    b = 8
    dut = AxiMaster(64, read_ports=3)
    mem = AxiMemory(dut.axi, MEM_BYTES)
    benches = []
    for i in range(3):
        port = dut.reads[i]
        pairs = [(i * PAGE_BYTES + k * b, 1) for k in range(4)]

        async def issue(ctx, port=port, pairs=pairs):
            await send(ctx, port.req, requests_of(pairs), random.Random(0), 0.0)

        async def drain(ctx, port=port):
            await receive(ctx, port.data, 4, random.Random(0), 0.0)

        benches += [issue, drain]
    simulate(dut, benches, background=[mem.run])
    # After reset client 0 counts as the last granted, so client 1 goes first.
    assert mem.ar_log == [(c * PAGE_BYTES + k * b, 1) for k in range(4) for c in (1, 2, 0)]


@pytest.mark.parametrize("stall", [0.0, 0.4])
@pytest.mark.parametrize("bus_bits", BUSES)
def test_writes_with_strobes_and_done(bus_bits, stall):
    b = bus_bits // 8
    rng = random.Random(bus_bits + 1)
    pairs = [(0x0100, 1), (PAGE_BYTES - 3 * b, 7), (0x2000 + 5 * b, 300), (0x0200, 4)]
    beats = []
    for _, n in pairs:
        for _ in range(n):
            strb = (1 << b) - 1 if rng.random() < 0.6 else rng.getrandbits(b)
            beats.append({"data": rng.getrandbits(bus_bits), "strb": strb})
    dut = AxiMaster(bus_bits, read_ports=1, max_outstanding=4)
    mem = AxiMemory(dut.axi, MEM_BYTES, write_latency=3, stall=stall, seed=bus_bits)
    mem.write_bytes(0, random_memory(MEM_BYTES, bus_bits))
    expected = bytearray(mem.mem)
    it = iter(beats)
    for addr, n in pairs:
        for k in range(n):
            beat = next(it)
            raw = beat["data"].to_bytes(b, "little")
            for j in range(b):
                if beat["strb"] >> j & 1:
                    expected[addr + k * b + j] = raw[j]

    async def issue(ctx):
        await send(ctx, dut.write.req, requests_of(pairs), random.Random(1), stall)

    async def feed(ctx):
        await send(ctx, dut.write.data, beats, random.Random(2), stall)

    async def watch_done(ctx):
        for addr, n in pairs:
            await ctx.tick().until(dut.write.done)
            # `done` must not come before DRAM has every beat of the request.
            end = addr + n * b
            assert mem.read_bytes(addr, n * b) == expected[addr:end], f"request at {addr:#x}"
        for _ in range(30):
            _, _, done = await ctx.tick().sample(dut.write.done)
            assert not done, "more done pulses than requests"

    simulate(dut, [issue, feed, watch_done], background=[mem.run])
    assert mem.mem == expected
    assert sorted(mem.aw_log) == all_bursts(pairs, b)


@pytest.mark.parametrize("seed", range(6))
def test_random_mixed_traffic(seed):
    rng = random.Random(seed)
    bus_bits = rng.choice(BUSES)
    b = bus_bits // 8
    n = rng.randint(1, 3)
    stall = rng.choice([0.0, 0.2, 0.5])
    dut = AxiMaster(bus_bits, read_ports=n, max_outstanding=rng.choice([1, 2, 8]))
    mem = AxiMemory(dut.axi, MEM_BYTES, read_latency=rng.randint(1, 10),
                    write_latency=rng.randint(1, 10), stall=stall, seed=seed)
    mem.write_bytes(0, random_memory(MEM_BYTES, seed))
    image = bytes(mem.mem)

    def request():
        return rng.randrange(0, MEM_BYTES // 2, b), rng.choice([1, 2, rng.randint(1, 80)])

    # Reads come from the low half, writes go to the high half, so reads see the initial image.
    reads = [[request() for _ in range(4)] for _ in range(n)]
    write_base = MEM_BYTES // 2
    writes = [(write_base + k * 0x400, rng.randint(1, 0x400 // b)) for k in range(4)]
    beats = [{"data": rng.getrandbits(bus_bits), "strb": (1 << b) - 1}
             for _, count in writes for _ in range(count)]
    got = {}
    benches = []
    for i, pairs in enumerate(reads):
        port = dut.reads[i]

        async def issue(ctx, port=port, pairs=pairs, seed=seed + i):
            await send(ctx, port.req, requests_of(pairs), random.Random(seed), stall)

        async def drain(ctx, port=port, pairs=pairs, i=i):
            count = sum(beats for _, beats in pairs)
            got[i] = await receive(ctx, port.data, count, random.Random(i), stall)

        benches += [issue, drain]

    async def write_requests(ctx):
        await send(ctx, dut.write.req, requests_of(writes), random.Random(1), stall)

    async def write_data(ctx):
        await send(ctx, dut.write.data, beats, random.Random(2), stall)

    async def write_acks(ctx):
        for _ in writes:
            await ctx.tick().until(dut.write.done)

    simulate(dut, [*benches, write_requests, write_data, write_acks], background=[mem.run])
    for i, pairs in enumerate(reads):
        expected = [int.from_bytes(image[a + k * b:a + (k + 1) * b], "little")
                    for a, count in pairs for k in range(count)]
        assert got[i] == expected, f"client {i}"
    written = [mem.beat(a + k * b) for a, count in writes for k in range(count)]
    assert written == [beat["data"] for beat in beats]


def test_error_responses_set_sticky_error():
    b = 8
    dut = AxiMaster(64, read_ports=1)
    mem = AxiMemory(dut.axi, MEM_BYTES, error_ranges=[(0x1000, 0x1040)])
    rng = random.Random(0)

    async def read(ctx, addr, beats):
        await send(ctx, dut.reads[0].req, requests_of([(addr, beats)]), rng, 0.0)
        await receive(ctx, dut.reads[0].data, beats, rng, 0.0)

    async def write(ctx, addr, beats):
        await send(ctx, dut.write.req, requests_of([(addr, beats)]), rng, 0.0)
        await send(ctx, dut.write.data, [{"data": 0, "strb": 0xFF}] * beats, rng, 0.0)
        await ctx.tick().until(dut.write.done)

    async def clear(ctx):
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)

    async def bench(ctx):
        await read(ctx, 0x0, 4)
        await write(ctx, 0x80, 4)
        assert not ctx.get(dut.error)
        await read(ctx, 0x1000 - 2 * b, 4)  # beats 2 and 3 get SLVERR
        assert ctx.get(dut.error)
        await ctx.tick().repeat(5)
        assert ctx.get(dut.error), "error must be sticky"
        await clear(ctx)
        assert not ctx.get(dut.error)
        await write(ctx, 0x1020, 2)
        assert ctx.get(dut.error)
        await clear(ctx)
        assert not ctx.get(dut.error)

    simulate(dut, [bench], background=[mem.run])


@pytest.mark.parametrize("bus_bits", BUSES)
def test_long_read_streams_one_beat_per_cycle(bus_bits):
    b = bus_bits // 8
    beats, latency = 600, 8
    addr = PAGE_BYTES - 8 * b  # the first burst is 8 beats long, then page-sized ones
    dut = AxiMaster(bus_bits, read_ports=2, max_outstanding=4)
    mem = AxiMemory(dut.axi, MEM_BYTES, read_latency=latency)
    cycles = []

    async def issue(ctx):
        await send(ctx, dut.reads[1].req, requests_of([(addr, beats)]), random.Random(0), 0.0)

    async def drain(ctx):
        await receive(ctx, dut.reads[1].data, beats, random.Random(0), 0.0, cycles)

    simulate(dut, [issue, drain], background=[mem.run])
    assert cycles[-1] - cycles[0] == beats - 1, "bubbles in a long read"
    # Request, AR register, slave latency and the R slice: a handful of cycles, not more.
    assert cycles[0] <= latency + 4


@pytest.mark.parametrize("bus_bits", BUSES)
def test_long_write_streams_one_beat_per_cycle(bus_bits):
    b = bus_bits // 8
    beats = 600
    addr = PAGE_BYTES - 8 * b
    dut = AxiMaster(bus_bits, read_ports=1, max_outstanding=4)
    mem = AxiMemory(dut.axi, MEM_BYTES, write_latency=4)
    w_cycles = []

    async def issue(ctx):
        await send(ctx, dut.write.req, requests_of([(addr, beats)]), random.Random(0), 0.0)

    async def feed(ctx):
        data = [{"data": k, "strb": (1 << b) - 1} for k in range(beats)]
        await send(ctx, dut.write.data, data, random.Random(0), 0.0)
        await ctx.tick().until(dut.write.done)

    async def watch_w(ctx):
        axi = dut.axi
        cycle = 0
        while len(w_cycles) < beats:
            _, _, valid, ready = await ctx.tick().sample(axi.wvalid, axi.wready)
            if valid and ready:
                w_cycles.append(cycle)
            cycle += 1

    simulate(dut, [issue, feed, watch_w], background=[mem.run])
    assert w_cycles[-1] - w_cycles[0] == beats - 1, "bubbles in a long write"
    assert [mem.beat(addr + k * b) for k in range(beats)] == list(range(beats))


def test_parameters_are_checked():
    with pytest.raises(ValueError, match="bus_bits must be one of"):
        AxiMaster(48, read_ports=2)
    with pytest.raises(ValueError, match="read_ports must be an integer from 1"):
        AxiMaster(64, read_ports=0)
    with pytest.raises(ValueError, match="max_outstanding"):
        AxiMaster(64, read_ports=1, max_outstanding=0)
    with pytest.raises(ValueError, match="data_bits must be a power of two"):
        Axi4Signature(data_bits=96)
    with pytest.raises(ValueError, match="AXI4-Lite must be 32 or 64"):
        AxiLiteSignature(data_bits=128)


def test_signatures_have_the_axi_names_and_widths():
    axi = Axi4Signature(data_bits=128).create()
    assert (len(axi.awlen), len(axi.arsize), len(axi.wstrb), len(axi.rdata)) == (8, 3, 16, 128)
    assert Axi4Signature(data_bits=128).members["rdata"].flow == In
    assert Axi4Signature(data_bits=128) == Axi4Signature(data_bits=128)
    assert Axi4Signature(data_bits=128) != Axi4Signature(data_bits=64)
    lite = AxiLiteSignature()
    assert len(lite.create().awaddr) == 12 and lite.members["rresp"].flow == In
