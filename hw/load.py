"""Load: executes LOAD INP and LOAD WGT, 2-D strided DMA with zero padding into INP and WGT."""

from __future__ import annotations

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.dma import ReadEngine2D
from hw.interfaces import ADDR_BITS, DramReadSignature, sram_write_signature
from hw.layouts import elem_layout, insn_layouts, insn_view
from hw.stage import TokenGate
from isa.config import HwConfig
from isa.formats import INSN_BITS, MemType, Opcode

KINDS = ("inp", "wgt")


def transfer_from(insn: data.View, base, elem_bytes: int, payload) -> list:
    """Statements filling a 2-D transfer payload from a LOAD/STORE view and a window base."""
    return [
        payload.sram_base.eq(insn.sram_base),
        payload.dram_addr.eq(base + insn.dram_base * elem_bytes),
        payload.stride_bytes.eq(insn.x_stride * elem_bytes),
        payload.y_size.eq(insn.y_size),
        payload.x_size.eq(insn.x_size),
        payload.y_pad_0.eq(insn.y_pad_0),
        payload.y_pad_1.eq(insn.y_pad_1),
        payload.x_pad_0.eq(insn.x_pad_0),
        payload.x_pad_1.eq(insn.x_pad_1),
    ]


def write_elements(m: Module, engine, port) -> None:
    """Wire a read engine's element stream into a buffer write port (always ready)."""
    m.d.comb += [
        port.en.eq(engine.out.valid),
        port.addr.eq(engine.out.payload.addr),
        port.data.eq(engine.out.payload.data),
        engine.out.ready.eq(1),
    ]


class Load(wiring.Component):
    """The load stage: INP and WGT transfers gated by compute->load and load->compute tokens."""

    def __init__(self, cfg: HwConfig):
        self.cfg = cfg
        members = {
            "insn": In(stream.Signature(unsigned(INSN_BITS))),
            "busy": Out(1),
            "stall": Out(1),
            "next_can_pop": In(1),
            "next_can_push": In(1),
            "next_pop": Out(1),
            "next_push": Out(1),
        }
        for kind in KINDS:
            members[f"{kind}_base"] = In(ADDR_BITS)
            members[f"dram_{kind}"] = Out(DramReadSignature(cfg.axi_data_bits))
            members[f"{kind}_wr"] = Out(sram_write_signature(cfg, kind, elem_layout(cfg, kind)))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        m.submodules.gate = gate = TokenGate(has_prev=False, has_next=True)
        head = insn_view(cfg, Opcode.LOAD, self.insn.payload)
        m.d.comb += [
            gate.valid.eq(self.insn.valid),
            gate.pop_next.eq(head.pop_next),
            gate.push_next.eq(head.push_next),
            gate.next_can_pop.eq(self.next_can_pop),
            gate.next_can_push.eq(self.next_can_push),
            self.next_pop.eq(gate.next_pop),
            self.next_push.eq(gate.next_push),
            self.insn.ready.eq(gate.start),
            self.busy.eq(gate.busy),
            self.stall.eq(gate.stall),
        ]

        current = Signal(insn_layouts(cfg)[Opcode.LOAD])
        issued = Signal()
        with m.If(gate.start):
            m.d.sync += [current.eq(head), issued.eq(head.x_size == 0)]

        engines_busy = []
        for kind in KINDS:
            engine = ReadEngine2D(cfg.elem_bits(kind), cfg.index_bits(kind), cfg.axi_data_bits)
            m.submodules[f"{kind}_engine"] = engine
            wiring.connect(m, engine.dram, wiring.flipped(getattr(self, f"dram_{kind}")))
            write_elements(m, engine, getattr(self, f"{kind}_wr"))
            mine = current.mem_type == (MemType.INP if kind == "inp" else MemType.WGT)
            m.d.comb += engine.cmd.valid.eq(gate.busy & ~issued & mine)
            m.d.comb += transfer_from(
                current, getattr(self, f"{kind}_base"), cfg.elem_bytes(kind), engine.cmd.payload
            )
            with m.If(engine.cmd.valid & engine.cmd.ready):
                m.d.sync += issued.eq(1)
            engines_busy.append(engine.busy)

        # `issued` is registered, so the engine's busy is already up when it is first seen here.
        m.d.comb += gate.complete.eq(issued & ~engines_busy[0] & ~engines_busy[1])
        return m
