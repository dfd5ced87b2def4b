"""The accelerator's Amaranth model as a program backend, and the AXI models it runs against.

`AmaranthSim(cfg).run(program, dram)` runs a Program on `hw.top.Accelerator` in Amaranth's
simulator the way a host driver would (window bases, instruction address and count, START, poll
DONE) and leaves the DRAM image as the accelerator left it, like `FunctionalSim.run`.

`AxiMemory` is an AXI4 slave memory that serves any number of outstanding bursts with a set
latency and seeded random back-pressure, and raises `AxiProtocolError` the moment the master
breaks a rule it checks. `AxiLiteMaster` performs single AXI4-Lite transactions like a host CPU.
`simulate` runs testbenches with a cycle limit. All are bus-width agnostic: widths come from the
signals. Typical use::

    mem = AxiMemory(dut.axi, size=1 << 16, read_latency=8, stall=0.3, seed=1)
    host = AxiLiteMaster(dut.ctrl)

    async def program(ctx):
        await host.write(ctx, 0x08, 0x1000)
        assert await host.read(ctx, 0x04) & 1 == 0

    simulate(dut, [program], background=[mem.run])
"""

from __future__ import annotations

import gc
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
from amaranth.sim import Simulator

from hw.regmap import REGISTERS, REGISTERS_BY_NAME
from hw.top import Accelerator
from isa.config import HwConfig
from isa.errors import SimError
from isa.program import Program

OKAY = 0b00
SLVERR = 0b10
INCR = 0b01
PAGE_BYTES = 4096
CLOCK_PERIOD = 1e-8  # seconds: 100 MHz


class AxiProtocolError(AssertionError):
    """The master under test broke an AXI rule that a model checks."""


def simulate(dut, testbenches, *, background=(), max_cycles=20_000, vcd=None):
    """Run async testbenches against `dut` on a 100 MHz `sync` clock until they all return.

    `background` testbenches (bus models) run only while the others do; they should wait with
    one-shot `await ctx.tick()...` or `async for`, not `until`/`repeat`, whose generators
    complain when the finished simulation discards them mid-wait. A run longer than
    `max_cycles` raises TimeoutError, so a deadlocked design fails instead of hanging. `vcd`
    names a waveform file to write.
    """
    sim = _simulator(dut, testbenches, background, lambda: max_cycles)
    try:
        if vcd is None:
            sim.run()
        else:
            with sim.write_vcd(vcd):
                sim.run()
    finally:
        del sim
        _finalize()


def _simulator(dut, testbenches, background, max_cycles: Callable[[], int]) -> Simulator:
    """A simulator of `dut` with a clock, the testbenches and a watchdog of `max_cycles()`."""
    sim = Simulator(dut)
    sim.add_clock(CLOCK_PERIOD)
    for bench in testbenches:
        sim.add_testbench(bench)
    for bench in background:
        sim.add_testbench(bench, background=True)

    async def watchdog(ctx):
        cycles = max_cycles()  # read at every (re)start, so a reused simulator can change it
        await ctx.delay(cycles * CLOCK_PERIOD)
        raise TimeoutError(f"simulation still running after {cycles} cycles")

    sim.add_testbench(watchdog, background=True)
    return sim


def _finalize() -> None:
    """Collect testbenches a simulation left suspended, at a moment of our choosing.

    They are reference cycles. Left to a random garbage collection they may be finalized inside
    a later ast.parse, which CPython 3.11.7 then fails with "AST constructor recursion depth
    mismatch".
    """
    gc.collect()


@dataclass
class _Burst:
    addr: int
    beats: int
    due: int  # first cycle its data (read) or response (write) may be presented
    sent: int = 0  # read beats already transferred
    resp: int = OKAY


class _Channel:
    """Valid/payload of one channel as sampled at consecutive edges, checked for stability."""

    def __init__(self, name: str):
        self.name = name
        self.pending = None  # payload offered but not taken at the previous edge

    def check(self, valid: int, ready: int, payload: tuple, cycle: int):
        if self.pending is not None and (not valid or payload != self.pending):
            raise AxiProtocolError(
                f"cycle {cycle}: {self.name}VALID dropped or its payload changed before "
                f"{self.name}READY ({self.pending} -> {payload if valid else 'not valid'})"
            )
        self.pending = payload if valid and not ready else None


class AxiMemory:
    """An AXI4 slave memory (`mem`, a bytearray) for a master port with Axi4Signature's members.

    `read_latency` is the minimum number of cycles from an AR handshake to its first R beat;
    `write_latency` likewise from a burst's last W beat (or its AW, if later) to its B. With
    `stall` > 0 each of AWREADY, WREADY, ARREADY is low, and each R beat or B response is held
    back, with that probability per cycle (from `random.Random(seed)`). Reads of a byte, and
    writes of a burst touching a byte, inside an `error_ranges` (start, end) half-open range get
    SLVERR (erroring writes are dropped). `max_reads`/`max_writes` bound the bursts the slave
    accepts before answering them (None: unbounded).

    Checked rules (AxiProtocolError): VALID stays high and the payload stable until READY;
    INCR bursts of the full bus width; bus-aligned addresses inside `mem`; no burst crosses
    4 KiB; WLAST exactly on the last beat of each burst (matched to AW in order, W may lead AW).
    Records: `ar_log`/`aw_log` hold (addr, beats) of every accepted burst, `peak_reads`/
    `peak_writes` the most bursts in flight at once, `cycles` the cycles run.
    """

    def __init__(self, axi, size: int, *, read_latency: int = 4, write_latency: int = 2,
                 stall: float = 0.0, seed: int = 0, error_ranges=(), max_reads=None,
                 max_writes=None):
        if read_latency < 1 or write_latency < 1:
            raise ValueError("read_latency and write_latency must be at least 1 cycle")
        self.axi = axi
        self.bus_bytes = len(axi.rdata) // 8
        self.mem = bytearray(size)
        self.read_latency = read_latency
        self.write_latency = write_latency
        self.stall = stall
        self.rng = random.Random(seed)
        self.error_ranges = list(error_ranges)
        self.max_reads = max_reads
        self.max_writes = max_writes
        self.ar_log: list[tuple[int, int]] = []
        self.aw_log: list[tuple[int, int]] = []
        self.peak_reads = 0
        self.peak_writes = 0
        self.cycles = 0
        self._reads: deque[_Burst] = deque()  # accepted AR bursts with beats still to send
        self._aw_wait: deque[_Burst] = deque()  # AW bursts whose W beats have not all come
        self._w_wait: deque[list] = deque()  # complete W bursts that came before their AW
        self._w_beats: list[tuple[int, int]] = []  # (data, strb) of the W burst in progress
        self._b_queue: deque[_Burst] = deque()  # writes done, responses not yet taken
        self._driven: dict = {}

    # -- helpers for tests --------------------------------------------------------------------

    def write_bytes(self, addr: int, data: bytes):
        """Preload memory contents."""
        self.mem[addr:addr + len(data)] = data

    def read_bytes(self, addr: int, length: int) -> bytes:
        """Memory contents as the master would read them."""
        return bytes(self.mem[addr:addr + length])

    def beat(self, addr: int) -> int:
        """The bus beat at bus-aligned byte `addr`, as an integer (byte 0 in the low bits)."""
        return int.from_bytes(self.mem[addr:addr + self.bus_bytes], "little")

    # -- the model --------------------------------------------------------------------------

    def _errors(self, lo: int, hi: int) -> bool:
        return any(lo < end and start < hi for start, end in self.error_ranges)

    def _set(self, ctx, signal, value: int):
        # Each ctx.set re-settles the design: skip the ones that change nothing.
        if self._driven.get(id(signal)) != value:
            self._driven[id(signal)] = value
            ctx.set(signal, value)

    def _driving(self, signal) -> int:
        return self._driven.get(id(signal), 0)

    def _check_burst(self, kind: str, addr: int, length: int, size: int, burst: int, cycle):
        beats = length + 1
        where = f"cycle {cycle}: {kind} burst at {addr:#x} of {beats} beats"
        if burst != INCR:
            raise AxiProtocolError(f"{where}: {kind}BURST {burst} is not INCR")
        if 1 << size != self.bus_bytes:
            raise AxiProtocolError(f"{where}: {kind}SIZE {size} is not the full bus width")
        if addr % self.bus_bytes:
            raise AxiProtocolError(f"{where}: address not aligned to the {self.bus_bytes}-byte bus")
        end = addr + beats * self.bus_bytes
        if addr // PAGE_BYTES != (end - 1) // PAGE_BYTES:
            raise AxiProtocolError(f"{where}: crosses a 4 KiB boundary")
        if end > len(self.mem):
            raise AxiProtocolError(f"{where}: past the end of the {len(self.mem)}-byte memory")
        return beats

    def _finish_write(self, aw: _Burst, beats: list, cycle: int):
        if len(beats) != aw.beats:
            raise AxiProtocolError(
                f"cycle {cycle}: W burst of {len(beats)} beats for AW at {aw.addr:#x} of "
                f"{aw.beats} beats"
            )
        end = aw.addr + aw.beats * self.bus_bytes
        if self._errors(aw.addr, end):
            aw.resp = SLVERR
        else:
            for i, (data, strb) in enumerate(beats):
                base = aw.addr + i * self.bus_bytes
                raw = data.to_bytes(self.bus_bytes, "little")
                for b in range(self.bus_bytes):
                    if strb >> b & 1:
                        self.mem[base + b] = raw[b]
        aw.due = cycle + self.write_latency - 1
        self._b_queue.append(aw)

    async def run(self, ctx):
        """Serve the bus forever: add with `sim.add_testbench(mem.run, background=True)`."""
        axi = self.axi
        ar = _Channel("AR")
        aw = _Channel("AW")
        w = _Channel("W")
        sampled = (
            axi.arvalid, axi.araddr, axi.arlen, axi.arsize, axi.arburst, axi.rready,
            axi.awvalid, axi.awaddr, axi.awlen, axi.awsize, axi.awburst,
            axi.wvalid, axi.wdata, axi.wstrb, axi.wlast, axi.bready,
        )
        self._drive_ready(ctx)
        async for _, _, *values in ctx.tick().sample(*sampled):
            self.cycles += 1
            cycle = self.cycles
            (arvalid, araddr, arlen, arsize, arburst, rready,
             awvalid, awaddr, awlen, awsize, awburst,
             wvalid, wdata, wstrb, wlast, bready) = values

            arready = self._driving(axi.arready)
            ar.check(arvalid, arready, (araddr, arlen, arsize, arburst), cycle)
            if arvalid and arready:
                beats = self._check_burst("AR", araddr, arlen, arsize, arburst, cycle)
                self.ar_log.append((araddr, beats))
                self._reads.append(_Burst(araddr, beats, cycle + self.read_latency - 1))
                self.peak_reads = max(self.peak_reads, len(self._reads))

            r_fire = self._driving(axi.rvalid) and rready
            if r_fire:
                burst = self._reads[0]
                burst.sent += 1
                if burst.sent == burst.beats:
                    self._reads.popleft()

            awready = self._driving(axi.awready)
            aw.check(awvalid, awready, (awaddr, awlen, awsize, awburst), cycle)
            if awvalid and awready:
                beats = self._check_burst("AW", awaddr, awlen, awsize, awburst, cycle)
                self.aw_log.append((awaddr, beats))
                burst = _Burst(awaddr, beats, 0)
                if self._w_wait:
                    self._finish_write(burst, self._w_wait.popleft(), cycle)
                else:
                    self._aw_wait.append(burst)

            wready = self._driving(axi.wready)
            w.check(wvalid, wready, (wdata, wstrb, wlast), cycle)
            if wvalid and wready:
                self._w_beats.append((wdata, wstrb))
                if self._aw_wait:
                    # The burst in progress belongs to the oldest AW still waiting for data.
                    expected = self._aw_wait[0].beats
                    if bool(wlast) != (len(self._w_beats) == expected):
                        raise AxiProtocolError(
                            f"cycle {cycle}: WLAST={wlast} on beat {len(self._w_beats)} of a "
                            f"{expected}-beat burst at {self._aw_wait[0].addr:#x}"
                        )
                if wlast:
                    beats, self._w_beats = self._w_beats, []
                    if self._aw_wait:
                        self._finish_write(self._aw_wait.popleft(), beats, cycle)
                    else:
                        self._w_wait.append(beats)
            self.peak_writes = max(self.peak_writes, len(self._aw_wait) + len(self._b_queue))

            b_fire = self._driving(axi.bvalid) and bready
            if b_fire:
                self._b_queue.popleft()

            self._drive_ready(ctx)
            self._drive_r(ctx, cycle, r_fire)
            self._drive_b(ctx, cycle, b_fire)

    def _go(self) -> bool:
        return self.stall == 0 or self.rng.random() >= self.stall

    def _drive_ready(self, ctx):
        axi = self.axi
        reads_full = self.max_reads is not None and len(self._reads) >= self.max_reads
        writes_full = (self.max_writes is not None
                       and len(self._aw_wait) + len(self._b_queue) >= self.max_writes)
        self._set(ctx, axi.arready, int(not reads_full and self._go()))
        self._set(ctx, axi.awready, int(not writes_full and self._go()))
        self._set(ctx, axi.wready, int(self._go()))

    def _drive_r(self, ctx, cycle: int, fired: bool):
        axi = self.axi
        if self._driving(axi.rvalid) and not fired:
            return  # the offered beat was not taken: hold it
        burst = self._reads[0] if self._reads else None
        if burst is None or burst.due > cycle or not self._go():
            self._set(ctx, axi.rvalid, 0)
            return
        addr = burst.addr + burst.sent * self.bus_bytes
        self._set(ctx, axi.rdata, self.beat(addr))
        self._set(ctx, axi.rresp, SLVERR if self._errors(addr, addr + self.bus_bytes) else OKAY)
        self._set(ctx, axi.rlast, int(burst.sent + 1 == burst.beats))
        self._set(ctx, axi.rvalid, 1)

    def _drive_b(self, ctx, cycle: int, fired: bool):
        axi = self.axi
        if self._driving(axi.bvalid) and not fired:
            return  # the offered response was not taken: hold it
        burst = self._b_queue[0] if self._b_queue else None
        if burst is None or burst.due > cycle or not self._go():
            self._set(ctx, axi.bvalid, 0)
            return
        self._set(ctx, axi.bresp, burst.resp)
        self._set(ctx, axi.bvalid, 1)


class AxiLiteMaster:
    """Drives an AXI4-Lite slave port (AxiLiteSignature's members) like a host CPU.

    Each call performs one transaction and returns when its response has been taken; it checks
    the response code (`expect`) and that the slave answers only after the request handshakes.
    """

    def __init__(self, bus, *, timeout: int = 1000):
        self.bus = bus
        self.timeout = timeout
        self.strb_all = (1 << len(bus.wstrb)) - 1

    async def write(self, ctx, addr: int, value: int, *, strb=None, w_delay: int = 0,
                    expect: int = OKAY):
        """Write `value` to `addr`; W is offered `w_delay` cycles after AW (negative: before)."""
        bus = self.bus
        ctx.set(bus.awaddr, addr)
        ctx.set(bus.wdata, value)
        ctx.set(bus.wstrb, self.strb_all if strb is None else strb)
        ctx.set(bus.bready, 1)
        aw_done = w_done = False
        for t in range(self.timeout):
            ctx.set(bus.awvalid, not aw_done and t >= -w_delay)
            ctx.set(bus.wvalid, not w_done and t >= w_delay)
            _, _, awvalid, awready, wvalid, wready, bvalid, bresp = await ctx.tick().sample(
                bus.awvalid, bus.awready, bus.wvalid, bus.wready, bus.bvalid, bus.bresp)
            if bvalid:
                if not (aw_done and w_done):
                    raise AxiProtocolError(f"BVALID for {addr:#x} before both AW and W")
                break
            aw_done |= bool(awvalid and awready)
            w_done |= bool(wvalid and wready)
        else:
            raise TimeoutError(f"AXI4-Lite write to {addr:#x} got no response")
        ctx.set(bus.awvalid, 0)
        ctx.set(bus.wvalid, 0)
        ctx.set(bus.bready, 0)
        if bresp != expect:
            raise AxiProtocolError(f"write to {addr:#x}: BRESP {bresp}, expected {expect}")

    async def read(self, ctx, addr: int, *, expect: int = OKAY) -> int:
        """Read `addr` and return the data."""
        bus = self.bus
        ctx.set(bus.araddr, addr)
        ctx.set(bus.rready, 1)
        ar_done = False
        for _ in range(self.timeout):
            ctx.set(bus.arvalid, not ar_done)
            _, _, arvalid, arready, rvalid, rdata, rresp = await ctx.tick().sample(
                bus.arvalid, bus.arready, bus.rvalid, bus.rdata, bus.rresp)
            if rvalid:
                if not ar_done:
                    raise AxiProtocolError(f"RVALID for {addr:#x} before the AR handshake")
                break
            ar_done |= bool(arvalid and arready)
        else:
            raise TimeoutError(f"AXI4-Lite read of {addr:#x} got no response")
        ctx.set(bus.arvalid, 0)
        ctx.set(bus.rready, 0)
        if rresp != expect:
            raise AxiProtocolError(f"read of {addr:#x}: RRESP {rresp}, expected {expect}")
        return rdata


# -- running programs --------------------------------------------------------------------------

_BASES = ("UOP_BASE", "INP_BASE", "WGT_BASE", "ACC_BASE", "OUT_BASE")
# What a run reports: its status, every counter (low word) and the config ID.
_READINGS = ("STATUS", *(r.name for r in REGISTERS if r.counter), "CONFIG_ID")
_CONTROL, _STATUS = REGISTERS_BY_NAME["CONTROL"], REGISTERS_BY_NAME["STATUS"]


def _offset(name: str) -> int:
    return REGISTERS_BY_NAME[name].offset


@dataclass
class _Job:
    """One run: the program, the DRAM model holding its image, what it read back, its limit."""

    program: Program
    memory: AxiMemory
    max_cycles: int
    readings: dict[str, int]


class AmaranthSim:
    """A program backend: the accelerator's Amaranth model with an `AxiMemory` DRAM and a host.

    `read_latency`, `stall` and `seed` configure the memory (see `AxiMemory`); a run longer than
    `max_cycles` (default: a generous bound from the program's size) raises TimeoutError. The
    simulator is built once and reset between runs, because building it takes longer than a
    small program runs; `close()`, or leaving a `with` block, releases it.
    """

    def __init__(self, cfg: HwConfig, *, read_latency: int = 4, stall: float = 0.0,
                 seed: int = 0, max_cycles: int | None = None):
        self.cfg = cfg
        self.read_latency, self.stall, self.seed = read_latency, stall, seed
        self.max_cycles = max_cycles
        self._sim: Simulator | None = None
        self._job: _Job | None = None

    def __enter__(self) -> AmaranthSim:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the simulator; a later run builds a new one."""
        self._sim = None
        _finalize()

    def run(self, program: Program, dram: np.ndarray) -> dict[str, int]:
        """Run a program on a DRAM image (updated in place); return registers and IRQ after it."""
        if program.config != self.cfg:
            raise SimError(
                f"the program was built for config {program.config.name}, but this accelerator "
                f"is {self.cfg.name}: rebuild the program or simulate its config"
            )
        if self._sim is None:
            self._sim = self._build()
        else:
            self._sim.reset()
            _finalize()  # the reset dropped the testbenches the last run left suspended
        memory = AxiMemory(self._axi, -(-len(dram) // PAGE_BYTES) * PAGE_BYTES,
                           read_latency=self.read_latency, stall=self.stall, seed=self.seed)
        memory.write_bytes(0, dram.tobytes())
        self._job = _Job(program, memory, self.max_cycles or _cycle_budget(program), {})
        try:
            self._sim.run()
        except BaseException:
            self.close()  # a simulation stopped midway is rebuilt rather than reset
            raise
        dram[:] = np.frombuffer(memory.mem, dtype=np.uint8, count=len(dram))
        readings = self._job.readings
        if readings["STATUS"] & _STATUS.field("DRAM_ERROR").mask:
            raise SimError("the accelerator reported a DRAM error response (STATUS.DRAM_ERROR)")
        return readings

    def _build(self) -> Simulator:
        dut = Accelerator(self.cfg)
        self._irq = dut.irq
        self._axi = SimpleNamespace(
            **{n: getattr(dut, f"m_axi_{n}") for n in dut.axi_signature.members}
        )
        self._host = AxiLiteMaster(SimpleNamespace(
            **{n: getattr(dut, f"s_axil_{n}") for n in dut.axil_signature.members}
        ))
        return _simulator(dut, [self._drive], [self._serve], lambda: self._job.max_cycles)

    async def _serve(self, ctx):
        await self._job.memory.run(ctx)

    async def _drive(self, ctx):
        """The host driver: window bases, instruction address and count, START, poll DONE."""
        host, job = self._host, self._job
        for name in _BASES:
            await host.write(ctx, _offset(name), 0)
        await host.write(ctx, _offset("INSN_BASE"), job.program.insn_offset)
        await host.write(ctx, _offset("INSN_COUNT"), len(job.program.insns))
        start = _CONTROL.field("START").mask | _CONTROL.field("IRQ_ENABLE").mask
        await host.write(ctx, _CONTROL.offset, start)
        while not await host.read(ctx, _STATUS.offset) & _STATUS.field("DONE").mask:
            for _ in range(8):  # one-shot waits: a hung run may end the simulation here
                await ctx.tick()
        job.readings["IRQ"] = ctx.get(self._irq)
        for name in _READINGS:
            job.readings[name] = await host.read(ctx, _offset(name))


def _cycle_budget(program: Program) -> int:
    """Cycles after which a run of `program` counts as hung: far more than it can need."""
    cfg = program.config
    bus_bytes = cfg.axi_data_bits // 8
    work = 0
    for insn in program.insns:
        fields = insn.fields()
        if "mem_type" in fields:
            width = insn.x_pad_0 + insn.x_size + insn.x_pad_1
            beats = max(1, cfg.elem_bytes(insn.mem.kind) // bus_bytes)
            work += width * (insn.y_pad_0 + insn.y_size + insn.y_pad_1) * beats
        elif "iter_out" in fields:
            work += insn.iter_out * insn.iter_in * (insn.uop_end - insn.uop_bgn)
    return 5_000 + 50 * (len(program.insns) + work)
