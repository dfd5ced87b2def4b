"""Store: executes STORE, 2-D strided DMA from the OUT buffer to DRAM."""

from __future__ import annotations

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.dma import WriteEngine2D
from hw.interfaces import ADDR_BITS, DramWriteSignature, sram_read_signature
from hw.layouts import elem_layout, insn_layouts, insn_view
from hw.load import transfer_from
from hw.stage import TokenGate
from isa.config import HwConfig
from isa.formats import INSN_BITS, Opcode


class Store(wiring.Component):
    """The store stage: OUT transfers gated by compute->store and store->compute tokens.

    A STORE completes when DRAM has acknowledged all of its writes, so the token it pushes
    to compute means the data is in DRAM.
    """

    def __init__(self, cfg: HwConfig):
        self.cfg = cfg
        super().__init__({
            "insn": In(stream.Signature(unsigned(INSN_BITS))),
            "out_base": In(ADDR_BITS),
            "dram": Out(DramWriteSignature(cfg.axi_data_bits)),
            "out_rd": Out(sram_read_signature(cfg, "out", elem_layout(cfg, "out"))),
            "busy": Out(1),
            "stall": Out(1),
            "prev_can_pop": In(1),
            "prev_can_push": In(1),
            "prev_pop": Out(1),
            "prev_push": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        m.submodules.gate = gate = TokenGate(has_prev=True, has_next=False)
        layout = insn_layouts(cfg)[Opcode.STORE]
        head = insn_view(cfg, Opcode.STORE, self.insn.payload)
        m.d.comb += [
            gate.valid.eq(self.insn.valid),
            gate.pop_prev.eq(head.pop_prev),
            gate.push_prev.eq(head.push_prev),
            gate.prev_can_pop.eq(self.prev_can_pop),
            gate.prev_can_push.eq(self.prev_can_push),
            self.prev_pop.eq(gate.prev_pop),
            self.prev_push.eq(gate.prev_push),
            self.insn.ready.eq(gate.start),
            self.busy.eq(gate.busy),
            self.stall.eq(gate.stall),
        ]

        current = Signal(layout)
        issued = Signal()
        with m.If(gate.start):
            m.d.sync += [current.eq(head), issued.eq(head.x_size == 0)]

        m.submodules.engine = engine = WriteEngine2D(
            cfg.elem_bits("out"), cfg.index_bits("out"), cfg.axi_data_bits
        )
        wiring.connect(m, engine.dram, wiring.flipped(self.dram))
        m.d.comb += [
            self.out_rd.en.eq(engine.sram.en),
            self.out_rd.addr.eq(engine.sram.addr),
            engine.sram.data.eq(self.out_rd.data),
        ]
        m.d.comb += engine.cmd.valid.eq(gate.busy & ~issued)
        m.d.comb += transfer_from(current, self.out_base, cfg.elem_bytes("out"), engine.cmd.payload)
        with m.If(engine.cmd.valid & engine.cmd.ready):
            m.d.sync += issued.eq(1)
        m.d.comb += gate.complete.eq(issued & ~engine.busy)
        return m
