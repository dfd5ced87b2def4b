"""AXI4 and AXI4-Lite signatures, and the AXI4 master that serves the units' DRAM ports.

`AxiMaster` turns `DramRequest`s into AXI4 INCR bursts of at most 256 beats that never cross a
4 KiB boundary. Reads: a round-robin arbiter hands one client's whole request at a time to a burst
splitter and moves on once its last burst is issued; AR runs ahead of R by up to `max_outstanding`
bursts, and a FIFO of burst owners routes R beats back (all bursts share one ID, so R returns in
AR order), so requests of several clients overlap in flight. Writes: AW runs ahead of W, W
carries `wlast` at every burst end, and `done` pulses once per request after its last B response.
Requests (after the read arbiter), R and W pass through two-entry register slices, and every AXI
output is a register or a constant, so no combinational path runs from an AXI input to an AXI
output, nor from the burst splitters to the clients; with all ready signals high a long transfer
moves one beat per cycle.
"""

from amaranth.hdl import Array, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from hw.interfaces import ADDR_BITS, BEATS_BITS, DramReadSignature, DramRequest, DramWriteSignature
from hw.skid import SkidBuffer
from isa.config import AXI_DATA_BITS

BURST_INCR = 0b01
RESP_OKAY = 0b00
# Normal non-cacheable bufferable: the AxCACHE that Xilinx and Intel interconnects expect from DMA.
CACHE_NORMAL = 0b0011
MAX_BURST_BEATS = 256
PAGE_BYTES = 4096


def _check_pow2(name: str, value, lo: int, hi: int):
    if not isinstance(value, int) or not lo <= value <= hi or value & (value - 1):
        raise ValueError(f"{name} must be a power of two from {lo} to {hi}, not {value!r}")


def _check_range(name: str, value, lo: int, hi: int):
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer from {lo} to {hi}, not {value!r}")


class _WidthSignature(wiring.Signature):
    """A bus signature that is equal to another of its class with the same widths."""

    data_bits: int
    addr_bits: int

    def __eq__(self, other):
        return (type(other) is type(self) and other.data_bits == self.data_bits
                and other.addr_bits == self.addr_bits)

    def __repr__(self):
        return f"{type(self).__name__}(data_bits={self.data_bits}, addr_bits={self.addr_bits})"


class Axi4Signature(_WidthSignature):
    """An AXI4 master port (master's view; a slave uses `In(...)`) with one ID, INCR bursts only.

    The 1-bit IDs are there because cocotbext-axi and some interconnects require the ports; the
    master drives `awid`/`arid` to 0 and ignores `bid`/`rid`. `awprot`/`arprot` are 0 and
    `awcache`/`arcache` are `CACHE_NORMAL`.
    """

    def __init__(self, *, data_bits: int, addr_bits: int = ADDR_BITS):
        _check_pow2("data_bits", data_bits, 8, 1024)
        _check_range("addr_bits", addr_bits, 12, 64)
        self.data_bits = data_bits
        self.addr_bits = addr_bits
        members = {}
        for ax in ("aw", "ar"):
            members |= {
                f"{ax}id": Out(1),
                f"{ax}addr": Out(addr_bits),
                f"{ax}len": Out(8),
                f"{ax}size": Out(3),
                f"{ax}burst": Out(2),
                f"{ax}cache": Out(4),
                f"{ax}prot": Out(3),
                f"{ax}valid": Out(1),
                f"{ax}ready": In(1),
            }
        super().__init__(members | {
            "wdata": Out(data_bits),
            "wstrb": Out(data_bits // 8),
            "wlast": Out(1),
            "wvalid": Out(1),
            "wready": In(1),
            "bid": In(1),
            "bresp": In(2),
            "bvalid": In(1),
            "bready": Out(1),
            "rid": In(1),
            "rdata": In(data_bits),
            "rresp": In(2),
            "rlast": In(1),
            "rvalid": In(1),
            "rready": Out(1),
        })



class AxiLiteSignature(_WidthSignature):
    """An AXI4-Lite master port (master's view; the register file's slave port is `In(...)`)."""

    def __init__(self, *, addr_bits: int = 12, data_bits: int = 32):
        _check_range("addr_bits", addr_bits, 3, 64)
        if data_bits not in (32, 64):
            raise ValueError(f"data_bits of AXI4-Lite must be 32 or 64, not {data_bits!r}")
        self.addr_bits = addr_bits
        self.data_bits = data_bits
        super().__init__({
            "awaddr": Out(addr_bits),
            "awprot": Out(3),
            "awvalid": Out(1),
            "awready": In(1),
            "wdata": Out(data_bits),
            "wstrb": Out(data_bits // 8),
            "wvalid": Out(1),
            "wready": In(1),
            "bresp": In(2),
            "bvalid": In(1),
            "bready": Out(1),
            "araddr": Out(addr_bits),
            "arprot": Out(3),
            "arvalid": Out(1),
            "arready": In(1),
            "rdata": In(data_bits),
            "rresp": In(2),
            "rvalid": In(1),
            "rready": Out(1),
        })



class _Burst(data.Struct):
    """One AXI burst of a request: `len` is AxLEN (beats - 1), `last` ends the request."""

    addr: unsigned(ADDR_BITS)
    len: unsigned(8)
    last: unsigned(1)


class _BurstSplitter(wiring.Component):
    """Splits requests (beats >= 1) into INCR bursts of <= 256 beats inside one 4 KiB page."""

    def __init__(self, bus_bits: int):
        self._shift = exact_log2(bus_bits // 8)
        super().__init__({
            "req": In(stream.Signature(DramRequest)),
            "burst": Out(stream.Signature(_Burst)),
        })

    def elaborate(self, platform):
        m = Module()
        shift = self._shift
        active = Signal()
        addr = Signal(ADDR_BITS)
        left = Signal(BEATS_BITS)

        page_beats = PAGE_BYTES >> shift
        to_page_end = Signal(range(page_beats + 1))
        m.d.comb += to_page_end.eq(page_beats - addr[shift:12])
        if page_beats > MAX_BURST_BEATS:
            cap = Mux(to_page_end > MAX_BURST_BEATS, MAX_BURST_BEATS, to_page_end)
        else:
            cap = to_page_end
        last = Signal()
        beats = Signal(range(MAX_BURST_BEATS + 1))
        m.d.comb += [
            last.eq(left <= cap),
            beats.eq(Mux(last, left, cap)),
            self.burst.valid.eq(active),
            self.burst.p.addr.eq(addr),
            self.burst.p.len.eq(beats - 1),
            self.burst.p.last.eq(last),
            # Taking the next request while the last burst leaves keeps one-burst requests at one
            # burst per cycle.
            self.req.ready.eq(~active | (self.burst.ready & last)),
        ]
        with m.If(self.burst.valid & self.burst.ready):
            m.d.sync += [
                addr.eq(addr + (beats << shift)),
                left.eq(left - beats),
                active.eq(~last),
            ]
        with m.If(self.req.valid & self.req.ready):
            m.d.sync += [addr.eq(self.req.p.addr), left.eq(self.req.p.beats), active.eq(1)]
        return m


def _address_channel(m: Module, axi, ax: str, burst, room) -> Signal:
    """Register `burst` onto the AXI address channel `ax` ("ar" or "aw"); returns its load strobe.

    A burst is loaded only when `room` says its bookkeeping entry fits, so every burst on the bus
    already owns one.
    """
    valid, ready = getattr(axi, f"{ax}valid"), getattr(axi, f"{ax}ready")
    load = Signal(name=f"{ax}_load")
    m.d.comb += [
        burst.ready.eq((~valid | ready) & room),
        load.eq(burst.valid & burst.ready),
        getattr(axi, f"{ax}size").eq(exact_log2(axi.signature.data_bits // 8)),
        getattr(axi, f"{ax}burst").eq(BURST_INCR),
        getattr(axi, f"{ax}cache").eq(CACHE_NORMAL),
    ]
    with m.If(load):
        m.d.sync += [
            valid.eq(1),
            getattr(axi, f"{ax}addr").eq(burst.p.addr),
            getattr(axi, f"{ax}len").eq(burst.p.len),
        ]
    with m.Elif(ready):
        m.d.sync += valid.eq(0)
    return load


class AxiMaster(wiring.Component):
    """The accelerator's one AXI4 master: round-robin DRAM read clients and one write client.

    `reads[i]` and `write` are the flipped client signatures of `hw.interfaces`. `error` is
    sticky: it rises on any non-OKAY RRESP or BRESP and falls on `clear` (a same-cycle error
    wins). `max_outstanding` bounds the bursts in flight per direction (issued on AR/AW, last R
    beat or B response not yet received).
    """

    def __init__(self, bus_bits: int, read_ports: int, max_outstanding: int = 8):
        if bus_bits not in AXI_DATA_BITS:
            raise ValueError(
                f"bus_bits must be one of {', '.join(map(str, AXI_DATA_BITS))}, not {bus_bits!r}"
            )
        _check_range("read_ports", read_ports, 1, 16)
        _check_range("max_outstanding", max_outstanding, 1, 256)
        self.bus_bits = bus_bits
        self.max_outstanding = max_outstanding
        super().__init__({
            "reads": In(DramReadSignature(bus_bits)).array(read_ports),
            "write": In(DramWriteSignature(bus_bits)),
            "axi": Out(Axi4Signature(data_bits=bus_bits)),
            "error": Out(1),
            "clear": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        axi = self.axi
        self._elaborate_reads(m)
        self._elaborate_writes(m)
        r_error = axi.rvalid & axi.rready & (axi.rresp != RESP_OKAY)
        b_error = axi.bvalid & axi.bready & (axi.bresp != RESP_OKAY)
        with m.If(self.clear):
            m.d.sync += self.error.eq(0)
        with m.If(r_error | b_error):
            m.d.sync += self.error.eq(1)
        return m

    def _elaborate_reads(self, m: Module):
        axi, reads = self.axi, self.reads
        n = len(reads)
        m.submodules.read_splitter = splitter = _BurstSplitter(self.bus_bits)

        # Round robin: the client after the last granted one has the highest priority. Later
        # comb assignments win, so the candidates go from lowest to highest priority.
        granted = Signal(range(n))
        chosen = Signal(range(n))
        with m.Switch(granted):
            for prev in range(n):
                with m.Case(prev):
                    for k in range(n, 0, -1):
                        client = (prev + k) % n
                        with m.If(reads[client].req.valid):
                            m.d.comb += chosen.eq(client)
        # A register slice between the arbiter and the splitter: the splitter's ready (its page
        # and burst arithmetic) does not reach the clients' request logic in the same cycle.
        owner_bits = max(1, (n - 1).bit_length())
        granted_req = data.StructLayout({"req": DramRequest, "owner": unsigned(owner_bits)})
        m.submodules.read_req_slice = rq = SkidBuffer(granted_req)
        m.d.comb += [
            rq.i.valid.eq(Array(r.req.valid for r in reads)[chosen]),
            rq.i.p.req.eq(Array(r.req.payload.as_value() for r in reads)[chosen]),
            rq.i.p.owner.eq(chosen),
            splitter.req.valid.eq(rq.o.valid),
            splitter.req.payload.eq(rq.o.p.req),
            rq.o.ready.eq(splitter.req.ready),
        ]
        for i, r in enumerate(reads):
            m.d.comb += r.req.ready.eq(rq.i.ready & (chosen == i))
        with m.If(rq.i.valid & rq.i.ready):
            m.d.sync += granted.eq(chosen)
        owner = Signal(owner_bits)  # of the request in the splitter
        with m.If(splitter.req.valid & splitter.req.ready):
            m.d.sync += owner.eq(rq.o.p.owner)

        # One entry per burst in flight: whose R beats come next, in AR order.
        m.submodules.read_owners = owners = SyncFIFO(width=owner_bits, depth=self.max_outstanding)
        ar_load = _address_channel(m, axi, "ar", splitter.burst, owners.w_rdy)
        m.d.comb += [owners.w_en.eq(ar_load), owners.w_data.eq(owner)]

        beat = data.StructLayout({"owner": unsigned(owner_bits), "data": unsigned(self.bus_bits)})
        m.submodules.read_slice = rslice = SkidBuffer(beat)
        m.d.comb += [
            rslice.i.valid.eq(axi.rvalid),
            rslice.i.p.owner.eq(owners.r_data),
            rslice.i.p.data.eq(axi.rdata),
            axi.rready.eq(rslice.i.ready),
            owners.r_en.eq(axi.rvalid & axi.rready & axi.rlast),
            rslice.o.ready.eq(Array(r.data.ready for r in reads)[rslice.o.p.owner]),
        ]
        for i, r in enumerate(reads):
            m.d.comb += [
                r.data.valid.eq(rslice.o.valid & (rslice.o.p.owner == i)),
                r.data.payload.eq(rslice.o.p.data),
            ]

    def _elaborate_writes(self, m: Module):
        axi, write = self.axi, self.write
        m.submodules.write_splitter = splitter = _BurstSplitter(self.bus_bits)
        m.submodules.write_req_slice = rq = SkidBuffer(DramRequest)  # as for reads
        wiring.connect(m, wiring.flipped(write.req), rq.i)
        wiring.connect(m, rq.o, splitter.req)

        # Per burst in flight: its AxLEN until its W beats have gone, and whether it ends a
        # request until its B arrives. A slave answers B only after the last W beat, so the
        # length FIFO never holds more entries than the ack FIFO and needs no room check.
        m.submodules.write_lens = lens = SyncFIFO(width=8, depth=self.max_outstanding)
        m.submodules.write_acks = acks = SyncFIFO(width=1, depth=self.max_outstanding)
        aw_load = _address_channel(m, axi, "aw", splitter.burst, acks.w_rdy)
        m.d.comb += [
            lens.w_en.eq(aw_load),
            lens.w_data.eq(splitter.burst.p.len),
            acks.w_en.eq(aw_load),
            acks.w_data.eq(splitter.burst.p.last),
        ]

        m.submodules.write_slice = wslice = SkidBuffer(write.data.payload.shape())
        wiring.connect(m, wiring.flipped(write.data), wslice.i)
        count = Signal(8)
        w_last = Signal()
        w_fire = Signal()
        m.d.comb += [
            w_last.eq(count == lens.r_data),
            axi.wvalid.eq(wslice.o.valid & lens.r_rdy),
            axi.wdata.eq(wslice.o.p.data),
            axi.wstrb.eq(wslice.o.p.strb),
            axi.wlast.eq(w_last),
            wslice.o.ready.eq(axi.wready & lens.r_rdy),
            w_fire.eq(axi.wvalid & axi.wready),
            lens.r_en.eq(w_fire & w_last),
        ]
        with m.If(w_fire):
            m.d.sync += count.eq(Mux(w_last, 0, count + 1))

        m.d.comb += [axi.bready.eq(1), acks.r_en.eq(axi.bvalid)]
        m.d.sync += write.done.eq(axi.bvalid & acks.r_data)
