"""The accelerator's top level: the core, its AXI4 master to DRAM and the AXI4-Lite host registers.

Ports are flat so that the Verilog module (`TOP_NAME`) has conventional names: `clk`, `rst`,
`m_axi_*` (AXI4 master, one ID, INCR bursts), `s_axil_*` (AXI4-Lite slave, 32-bit registers of
`hw.regmap`) and `irq`. Writing START resets the core (queues, tokens and unit state; buffer
contents stay) and launches fetch in the next cycle; the run is done when FINISH has executed and
every queue and unit is idle.
"""

from __future__ import annotations

from amaranth.hdl import Module, ResetInserter, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from hw.axi import Axi4Signature, AxiLiteSignature, AxiMaster
from hw.core import BASES, EVENTS, READ_CLIENTS, Core
from hw.regs import RegisterFile
from isa.config import HwConfig

TOP_NAME = "loom_accel"


def top_signature(cfg: HwConfig) -> wiring.Signature:
    """The top level's flat ports: m_axi_* (AXI4 master), s_axil_* (AXI4-Lite slave), irq."""
    axi = Axi4Signature(data_bits=cfg.axi_data_bits)
    members = {f"m_axi_{n}": mem for n, mem in axi.members.items()}
    members |= {f"s_axil_{n}": mem.flip() for n, mem in AxiLiteSignature().members.items()}
    members["irq"] = Out(1)
    return wiring.Signature(members)


class Accelerator(wiring.Component):
    """The whole accelerator for one HwConfig."""

    def __init__(self, cfg: HwConfig):
        self.cfg = cfg
        self.axi_signature = Axi4Signature(data_bits=cfg.axi_data_bits)
        self.axil_signature = AxiLiteSignature()
        super().__init__(top_signature(cfg))

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        m.submodules.regs = regs = RegisterFile(cfg)
        m.submodules.axi = axi = AxiMaster(cfg.axi_data_bits, read_ports=len(READ_CLIENTS))
        core = Core(cfg)
        m.submodules.core = ResetInserter(regs.start)(core)

        flatten_ports(m, self, "m_axi_", axi.axi, self.axi_signature, master=True)
        flatten_ports(m, self, "s_axil_", regs.bus, self.axil_signature, master=False)
        for index, client in enumerate(READ_CLIENTS):
            wiring.connect(m, getattr(core, f"dram_{client}"), axi.reads[index])
        wiring.connect(m, core.dram_out, axi.write)

        # The core is in reset during the START cycle, so it is launched one cycle later.
        launch = Signal()
        running = Signal()
        done = Signal()
        m.d.sync += launch.eq(regs.start)
        m.d.comb += done.eq(running & ~launch & core.finished)
        with m.If(regs.start):
            m.d.sync += running.eq(1)
        with m.Elif(done):
            m.d.sync += running.eq(0)

        m.d.comb += [
            core.start.eq(launch),
            core.insn_base.eq(regs.insn_base),
            core.insn_count.eq(regs.insn_count),
            regs.busy.eq(running),
            regs.done.eq(done),
            regs.dram_error.eq(axi.error),
            axi.clear.eq(regs.start),
            self.irq.eq(regs.irq),
        ]
        for kind in BASES:
            m.d.comb += getattr(core, f"{kind}_base").eq(getattr(regs, f"{kind}_base"))
        for event in EVENTS:
            m.d.comb += getattr(regs, f"count_{event}").eq(getattr(core, event) & running)
        return m


def flatten_ports(m: Module, top, prefix: str, inner, signature, *, master: bool) -> None:
    """Wire an interface to the top level's flat `prefix*` ports (`master`: inner drives Out)."""
    for name, member in signature.members.items():
        outer_port, inner_port = getattr(top, prefix + name), getattr(inner, name)
        drives_out = (member.flow == Out) == master
        m.d.comb += outer_port.eq(inner_port) if drives_out else inner_port.eq(outer_port)
