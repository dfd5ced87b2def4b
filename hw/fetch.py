"""Fetch: reads the instruction stream from DRAM and routes each instruction to its stage's queue.

Routing is VTA's: STORE to the store queue, LOAD of INP or WGT to the load queue, everything
else to the compute queue. A full target queue stalls fetch, as the ISA says.

Fetch never makes DRAM wait for it: the DRAM read channel is shared (one AXI ID, responses in
order), so a client that stopped taking beats would block the uop and bias loads that compute
needs to drain its queue, and the accelerator would deadlock. So fetch reads the stream in
chunks of `CHUNK` instructions into a prefetch buffer of `BUFFER` entries, and requests a chunk
only when the buffer has room for all of it; the stall on a full queue happens between the
buffer and the queues.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.dma import ReadEngine2D
from hw.interfaces import ADDR_BITS, DramReadSignature
from hw.layouts import insn_view
from hw.skid import SkidBuffer
from isa.config import HwConfig
from isa.formats import INSN_BITS, MemType, Opcode

CHUNK = 16
BUFFER = 2 * CHUNK
INSN_BYTES = INSN_BITS // 8


class Fetch(wiring.Component):
    """Instruction fetch and routing into the load, compute and store queues."""

    def __init__(self, cfg: HwConfig):
        self.cfg = cfg
        queue = stream.Signature(unsigned(INSN_BITS))
        super().__init__({
            "start": In(1),
            "insn_base": In(ADDR_BITS),
            "insn_count": In(32),
            "dram": Out(DramReadSignature(cfg.axi_data_bits)),
            "load_q": Out(queue),
            "compute_q": Out(queue),
            "store_q": Out(queue),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = engine = ReadEngine2D(INSN_BITS, 1, self.cfg.axi_data_bits)
        wiring.connect(m, engine.dram, wiring.flipped(self.dram))

        m.submodules.buffer = buffer = fifo.SyncFIFOBuffered(width=INSN_BITS, depth=BUFFER)
        remaining = Signal(32)
        addr = Signal(ADDR_BITS)
        chunk = Signal(range(CHUNK + 1))
        in_flight = Signal(range(BUFFER + 1))  # requested, not yet in the buffer
        m.d.comb += chunk.eq(remaining.as_unsigned())
        with m.If(remaining > CHUNK):
            m.d.comb += chunk.eq(CHUNK)
        room = buffer.level + in_flight + chunk <= BUFFER
        # The chunk and room arithmetic reach the engine through a register slice, not into the
        # same cycle as its row planner's start.
        m.submodules.cmd_slice = cmd = SkidBuffer(engine.cmd.payload.shape())
        wiring.connect(m, cmd.o, engine.cmd)
        m.d.comb += [
            cmd.i.valid.eq((remaining != 0) & room),
            cmd.i.payload.dram_addr.eq(addr),
            cmd.i.payload.y_size.eq(1),
            cmd.i.payload.x_size.eq(chunk),
            buffer.w_data.eq(engine.out.payload.data),
            buffer.w_en.eq(engine.out.valid),
            engine.out.ready.eq(1),  # `room` reserved the space before the request
        ]
        issued = cmd.i.valid & cmd.i.ready
        arrived = engine.out.valid
        with m.If(self.start):
            m.d.sync += [remaining.eq(self.insn_count), addr.eq(self.insn_base), in_flight.eq(0)]
        with m.Else():
            with m.If(issued):
                m.d.sync += [remaining.eq(remaining - chunk), addr.eq(addr + chunk * INSN_BYTES)]
            m.d.sync += in_flight.eq(in_flight + Mux(issued, chunk, 0) - arrived)

        word = buffer.r_data
        header = insn_view(self.cfg, Opcode.LOAD, word)
        to_store = header.opcode == Opcode.STORE
        to_load = (header.opcode == Opcode.LOAD) & (
            (header.mem_type == MemType.INP) | (header.mem_type == MemType.WGT)
        )
        to_compute = ~to_store & ~to_load
        for queue, selected in (
            (self.load_q, to_load), (self.compute_q, to_compute), (self.store_q, to_store)
        ):
            m.d.comb += [queue.payload.eq(word), queue.valid.eq(buffer.r_rdy & selected)]
            with m.If(selected):
                m.d.comb += buffer.r_en.eq(queue.ready)
        m.d.comb += self.busy.eq((remaining != 0) | ~cmd.empty | engine.busy | buffer.r_rdy)
        return m
