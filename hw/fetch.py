"""Fetch: reads the instruction stream from DRAM and routes each instruction to its stage's queue.

Routing is VTA's: STORE to the store queue, LOAD of INP or WGT to the load queue, everything
else to the compute queue. The stream is read by a 2-D read engine in chunks of at most
`CHUNK` instructions (the x_size field is 16 bits); an instruction waits in the engine's output
until its queue has room, which back-pressures DRAM reads, so fetch stalls exactly as the ISA's
"fetch stalls while the target queue is full" says.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.dma import ReadEngine2D
from hw.interfaces import ADDR_BITS, DramReadSignature
from hw.layouts import insn_view
from isa.config import HwConfig
from isa.formats import INSN_BITS, MemType, Opcode

CHUNK = 1 << 15
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

        remaining = Signal(32)
        addr = Signal(ADDR_BITS)
        chunk = Signal(range(CHUNK + 1))
        m.d.comb += chunk.eq(remaining.as_unsigned())
        with m.If(remaining > CHUNK):
            m.d.comb += chunk.eq(CHUNK)
        m.d.comb += [
            engine.cmd.valid.eq(remaining != 0),
            engine.cmd.payload.dram_addr.eq(addr),
            engine.cmd.payload.y_size.eq(1),
            engine.cmd.payload.x_size.eq(chunk),
        ]
        with m.If(self.start):
            m.d.sync += [remaining.eq(self.insn_count), addr.eq(self.insn_base)]
        with m.Elif(engine.cmd.valid & engine.cmd.ready):
            m.d.sync += [remaining.eq(remaining - chunk), addr.eq(addr + chunk * INSN_BYTES)]

        word = engine.out.payload.data
        header = insn_view(self.cfg, Opcode.LOAD, word)
        to_store = header.opcode == Opcode.STORE
        to_load = (header.opcode == Opcode.LOAD) & (
            (header.mem_type == MemType.INP) | (header.mem_type == MemType.WGT)
        )
        to_compute = ~to_store & ~to_load
        for queue, selected in (
            (self.load_q, to_load), (self.compute_q, to_compute), (self.store_q, to_store)
        ):
            m.d.comb += [queue.payload.eq(word), queue.valid.eq(engine.out.valid & selected)]
            with m.If(selected):
                m.d.comb += engine.out.ready.eq(queue.ready)
        m.d.comb += self.busy.eq((remaining != 0) | engine.busy)
        return m
