"""An on-chip memory behind an AXI4 slave port, with a 32-bit word port for a host bridge.

`AxiRam(data_bits, depth)` holds `depth` words of `data_bits` (block RAM on an FPGA: one write
port with byte enables, one synchronous read port). It serves one transaction at a time, AXI
reads and writes as INCR bursts at one beat per cycle, and the host port's single 32-bit word
accesses between them. Addresses wrap at the memory's size; every response is OKAY.
"""

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from hw.axi import Axi4Signature

HOST_WORD_BITS = 32


class HostPortSignature(wiring.Signature):
    """A 32-bit word access (master's view): hold `valid` until `done`; `rdata` is valid then."""

    def __init__(self):
        super().__init__({
            "addr": Out(32),  # byte address, 4-byte aligned (the low two bits are ignored)
            "wdata": Out(HOST_WORD_BITS),
            "write": Out(1),
            "valid": Out(1),
            "done": In(1),
            "rdata": In(HOST_WORD_BITS),
        })


class AxiRam(wiring.Component):
    """`depth` words of `data_bits` behind an AXI4 slave port and a 32-bit host port."""

    def __init__(self, data_bits: int, depth: int):
        if depth < 2 or depth & (depth - 1):
            raise ValueError(f"depth must be a power of two of at least 2, not {depth!r}")
        if data_bits < HOST_WORD_BITS:
            raise ValueError(f"data_bits must be at least {HOST_WORD_BITS}, not {data_bits!r}")
        self.data_bits = data_bits
        self.depth = depth
        super().__init__({
            "axi": In(Axi4Signature(data_bits=data_bits)),
            "host": In(HostPortSignature()),
        })

    @property
    def size_bytes(self) -> int:
        """Bytes of memory."""
        return self.depth * self.data_bits // 8

    def elaborate(self, platform):
        m = Module()
        axi, host = self.axi, self.host
        m.submodules.mem = mem = Memory(shape=unsigned(self.data_bits), depth=self.depth, init=[])
        wr = mem.write_port(granularity=8)
        rd = mem.read_port()
        beat_shift = exact_log2(self.data_bits // 8)
        lanes = self.data_bits // HOST_WORD_BITS
        row = Signal(range(self.depth))
        left = Signal(8)  # beats still to address in a read burst
        pending = Signal()  # rd.data holds a beat not yet taken by the master
        last = Signal()  # ... and it is the burst's last beat
        lane = Signal(exact_log2(lanes))  # which 32-bit word of a row the host addresses

        m.d.comb += [
            axi.rdata.eq(rd.data), axi.rvalid.eq(pending), axi.rlast.eq(last),
            wr.addr.eq(row), rd.addr.eq(row),
        ]
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += axi.arready.eq(1)
                with m.If(axi.arvalid):
                    m.d.sync += [row.eq(axi.araddr >> beat_shift), left.eq(axi.arlen)]
                    m.next = "READ"
                with m.Elif(axi.awvalid):
                    m.d.comb += axi.awready.eq(1)
                    m.d.sync += row.eq(axi.awaddr >> beat_shift)
                    m.next = "WRITE"
                with m.Elif(host.valid):
                    m.d.sync += [row.eq(host.addr >> beat_shift),
                                 lane.eq(host.addr[2:2 + exact_log2(lanes)])]
                    m.next = "HOST"
            with m.State("READ"):
                # Address the next beat whenever the output register is free or being taken.
                with m.If(~pending | axi.rready):
                    m.d.comb += rd.en.eq(1)
                    m.d.sync += [pending.eq(1), last.eq(left == 0), row.eq(row + 1),
                                 left.eq(left - 1)]
                    with m.If(pending & last):
                        m.d.comb += rd.en.eq(0)
                        m.d.sync += [pending.eq(0), last.eq(0), row.eq(row)]
                        m.next = "IDLE"
                with m.Else():
                    m.d.comb += rd.en.eq(0)
            with m.State("WRITE"):
                m.d.comb += axi.wready.eq(1)
                with m.If(axi.wvalid):
                    m.d.comb += [wr.data.eq(axi.wdata), wr.en.eq(axi.wstrb)]
                    m.d.sync += row.eq(row + 1)
                    with m.If(axi.wlast):
                        m.next = "RESPOND"
            with m.State("RESPOND"):
                m.d.comb += axi.bvalid.eq(1)
                with m.If(axi.bready):
                    m.next = "IDLE"
            with m.State("HOST"):
                with m.If(host.write):
                    m.d.comb += [wr.data.eq(host.wdata.replicate(lanes)),
                                 wr.en.eq(0xF << (lane * 4)), host.done.eq(1)]
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += rd.en.eq(1)
                    m.next = "HOST_READ"
            with m.State("HOST_READ"):
                m.d.comb += [host.rdata.eq(rd.data.word_select(lane, HOST_WORD_BITS)),
                             host.done.eq(1)]
                m.next = "IDLE"
        return m
