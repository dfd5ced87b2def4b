"""Compute: executes LOAD UOP, LOAD ACC, GEMM, ALU and FINISH from the compute queue.

LOAD UOP and LOAD ACC run on two read engines of their own (the uop kernels and the biases),
GEMM and ALU on the execute pipeline; one instruction at a time, gated by the four token queues
around compute. The ACC write port is shared: the ACC read engine drives it during a LOAD ACC,
the execute pipeline otherwise.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.dma import ReadEngine2D
from hw.execute import ExecutePipeline
from hw.interfaces import ADDR_BITS, DramReadSignature, sram_read_signature, sram_write_signature
from hw.layouts import elem_layout, insn_view, uop_layout
from hw.load import transfer_from, write_elements
from hw.stage import TokenGate
from isa.config import HwConfig
from isa.formats import INSN_BITS, MemType, Opcode

LOAD_KINDS = ("uop", "acc")


class Compute(wiring.Component):
    """The compute stage: uop and bias loads, the execute pipeline, and FINISH."""

    def __init__(self, cfg: HwConfig):
        self.cfg = cfg
        members = {
            "insn": In(stream.Signature(unsigned(INSN_BITS))),
            "finish": Out(1),
            "busy": Out(1),
            "stall": Out(1),
            "gemm_uops": Out(1),
            "alu_uops": Out(1),
            "uop_rd": Out(sram_read_signature(cfg, "uop", uop_layout(cfg))),
            "uop_wr": Out(sram_write_signature(cfg, "uop", uop_layout(cfg))),
            "inp_rd": Out(sram_read_signature(cfg, "inp", elem_layout(cfg, "inp"))),
            "wgt_rd": Out(sram_read_signature(cfg, "wgt", elem_layout(cfg, "wgt"))),
            "acc_rd": Out(sram_read_signature(cfg, "acc", elem_layout(cfg, "acc"))),
            "acc_wr": Out(sram_write_signature(cfg, "acc", elem_layout(cfg, "acc"))),
            "out_wr": Out(sram_write_signature(cfg, "out", elem_layout(cfg, "out"))),
        }
        for kind in LOAD_KINDS:
            members[f"{kind}_base"] = In(ADDR_BITS)
            members[f"dram_{kind}"] = Out(DramReadSignature(cfg.axi_data_bits))
        for side in ("prev", "next"):
            members[f"{side}_can_pop"] = In(1)
            members[f"{side}_can_push"] = In(1)
            members[f"{side}_pop"] = Out(1)
            members[f"{side}_push"] = Out(1)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        m.submodules.gate = gate = TokenGate(has_prev=True, has_next=True)
        head = insn_view(cfg, Opcode.LOAD, self.insn.payload)
        m.d.comb += [
            gate.valid.eq(self.insn.valid),
            self.insn.ready.eq(gate.start),
            self.busy.eq(gate.busy),
            self.stall.eq(gate.stall),
        ]
        for flag in ("pop_prev", "pop_next", "push_prev", "push_next"):
            m.d.comb += getattr(gate, flag).eq(getattr(head, flag))
        for side in ("prev", "next"):
            for port in ("can_pop", "can_push"):
                m.d.comb += getattr(gate, f"{side}_{port}").eq(getattr(self, f"{side}_{port}"))
            for port in ("pop", "push"):
                m.d.comb += getattr(self, f"{side}_{port}").eq(getattr(gate, f"{side}_{port}"))

        word = Signal(INSN_BITS)
        current = insn_view(cfg, Opcode.LOAD, word)
        issued = Signal()
        is_load = current.opcode == Opcode.LOAD
        with m.If(gate.start):
            trivial = (head.opcode == Opcode.FINISH) | (
                (head.opcode == Opcode.LOAD) & (head.x_size == 0)
            )
            m.d.sync += [word.eq(self.insn.payload), issued.eq(trivial)]
            m.d.comb += self.finish.eq(head.opcode == Opcode.FINISH)

        m.submodules.execute = execute = ExecutePipeline(cfg)
        for port in ("uop_rd", "inp_rd", "wgt_rd", "acc_rd", "out_wr"):
            wiring.connect(m, getattr(execute, port), wiring.flipped(getattr(self, port)))
        m.d.comb += [
            execute.insn.payload.eq(word),
            execute.insn.valid.eq(gate.busy & ~issued & ~is_load),
            self.gemm_uops.eq(execute.gemm_uops),
            self.alu_uops.eq(execute.alu_uops),
        ]
        with m.If(execute.insn.valid & execute.insn.ready):
            m.d.sync += issued.eq(1)

        engines_busy = [execute.busy]
        for kind, mem in (("uop", MemType.UOP), ("acc", MemType.ACC)):
            engine = ReadEngine2D(cfg.elem_bits(kind), cfg.index_bits(kind), cfg.axi_data_bits)
            m.submodules[f"{kind}_engine"] = engine
            wiring.connect(m, engine.dram, wiring.flipped(getattr(self, f"dram_{kind}")))
            m.d.comb += engine.cmd.valid.eq(
                gate.busy & ~issued & is_load & (current.mem_type == mem)
            )
            m.d.comb += transfer_from(
                current, getattr(self, f"{kind}_base"), cfg.elem_bytes(kind), engine.cmd.payload
            )
            with m.If(engine.cmd.valid & engine.cmd.ready):
                m.d.sync += issued.eq(1)
            engines_busy.append(engine.busy)
            if kind == "uop":
                write_elements(m, engine, self.uop_wr)
            else:
                acc_engine = engine
        self._share_acc_write(m, acc_engine, execute)

        idle = Signal()
        m.d.comb += idle.eq(1)
        for busy in engines_busy:
            with m.If(busy):
                m.d.comb += idle.eq(0)
        # `issued` is registered, so an engine's busy is already up when it is first seen here.
        m.d.comb += gate.complete.eq(issued & idle)
        return m

    def _share_acc_write(self, m: Module, engine: ReadEngine2D, execute: ExecutePipeline) -> None:
        """The ACC read engine writes ACC during a LOAD ACC, the execute pipeline otherwise."""
        port = self.acc_wr
        m.d.comb += engine.out.ready.eq(1)
        with m.If(engine.busy):
            m.d.comb += [
                port.en.eq(engine.out.valid),
                port.addr.eq(engine.out.payload.addr),
                port.data.eq(engine.out.payload.data),
            ]
        with m.Else():
            m.d.comb += [
                port.en.eq(execute.acc_wr.en),
                port.addr.eq(execute.acc_wr.addr),
                port.data.eq(execute.acc_wr.data),
            ]
