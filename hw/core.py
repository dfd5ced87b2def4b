"""The accelerator core: fetch, the three stage queues, load, compute, store, tokens and buffers.

Everything here speaks the internal DRAM ports of `hw.interfaces`; `hw.top` adds the AXI master
and the host registers around it. The top level resets the core when the host starts a run, so
every run begins with empty queues and tokens while the buffers keep their contents.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import fifo, memory, wiring
from amaranth.lib.wiring import In, Out

from hw.compute import Compute
from hw.fetch import Fetch
from hw.interfaces import ADDR_BITS, DramReadSignature, DramWriteSignature
from hw.layouts import elem_layout, uop_layout
from hw.load import Load
from hw.skid import SkidBuffer
from hw.store import Store
from hw.tokens import TokenQueue
from isa.config import HwConfig
from isa.formats import INSN_BITS

READ_CLIENTS = ("fetch", "inp", "wgt", "uop", "acc")
BASES = ("uop", "inp", "wgt", "acc", "out")
EVENTS = (
    "fetch_busy", "load_busy", "load_stall", "compute_busy", "compute_stall", "store_busy",
    "store_stall", "gemm_uops", "alu_uops",
)


class Core(wiring.Component):
    """Fetch, load, compute and store with their queues, tokens and on-chip buffers."""

    def __init__(self, cfg: HwConfig):
        self.cfg = cfg
        bus = cfg.axi_data_bits
        members = {
            "start": In(1),
            "insn_base": In(ADDR_BITS),
            "insn_count": In(32),
            "finished": Out(1),
            "dram_out": Out(DramWriteSignature(bus)),
        }
        members |= {f"{kind}_base": In(ADDR_BITS) for kind in BASES}
        members |= {f"dram_{client}": Out(DramReadSignature(bus)) for client in READ_CLIENTS}
        members |= {event: Out(1) for event in EVENTS}
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        m.submodules.fetch = fetch = Fetch(cfg)
        m.submodules.load = load = Load(cfg)
        m.submodules.compute = compute = Compute(cfg)
        m.submodules.store = store = Store(cfg)

        m.d.comb += [
            fetch.start.eq(self.start),
            fetch.insn_base.eq(self.insn_base),
            fetch.insn_count.eq(self.insn_count),
            load.inp_base.eq(self.inp_base),
            load.wgt_base.eq(self.wgt_base),
            compute.uop_base.eq(self.uop_base),
            compute.acc_base.eq(self.acc_base),
            store.out_base.eq(self.out_base),
        ]
        wiring.connect(m, fetch.dram, wiring.flipped(self.dram_fetch))
        wiring.connect(m, load.dram_inp, wiring.flipped(self.dram_inp))
        wiring.connect(m, load.dram_wgt, wiring.flipped(self.dram_wgt))
        wiring.connect(m, compute.dram_uop, wiring.flipped(self.dram_uop))
        wiring.connect(m, compute.dram_acc, wiring.flipped(self.dram_acc))
        wiring.connect(m, store.dram, wiring.flipped(self.dram_out))

        queues_empty = self._queues(m, fetch, (load, compute, store))
        self._tokens(m, load, compute, store)
        self._buffers(m, load, compute, store)

        finish_seen = Signal()
        with m.If(compute.finish):
            m.d.sync += finish_seen.eq(1)
        m.d.comb += self.finished.eq(
            finish_seen & queues_empty & ~fetch.busy & ~load.busy & ~compute.busy & ~store.busy
        )
        m.d.comb += [
            self.fetch_busy.eq(fetch.busy),
            self.load_busy.eq(load.busy),
            self.load_stall.eq(load.stall),
            self.compute_busy.eq(compute.busy),
            self.compute_stall.eq(compute.stall),
            self.store_busy.eq(store.busy),
            self.store_stall.eq(store.stall),
            self.gemm_uops.eq(compute.gemm_uops),
            self.alu_uops.eq(compute.alu_uops),
        ]
        return m

    def _queues(self, m: Module, fetch: Fetch, units) -> Signal:
        """Instruction FIFOs from fetch to each unit; returns "all empty"."""
        empty = Signal()
        levels = []
        for name, unit in zip(("load", "compute", "store"), units, strict=True):
            queue = fifo.SyncFIFOBuffered(width=INSN_BITS, depth=self.cfg.insn_queue_depth)
            m.submodules[f"{name}_queue"] = queue
            wiring.connect(m, getattr(fetch, f"{name}_q"), queue.w_stream)
            # The queue's block RAM output is slow (no output register in the RAM): a register
            # slice keeps it out of the unit's start decision, which drives the queue's read.
            m.submodules[f"{name}_slice"] = head = SkidBuffer(unsigned(INSN_BITS))
            wiring.connect(m, queue.r_stream, head.i)
            wiring.connect(m, head.o, unit.insn)
            levels.append((queue.level == 0) & head.empty)
        m.d.comb += empty.eq(levels[0] & levels[1] & levels[2])
        return empty

    def _tokens(self, m: Module, load: Load, compute: Compute, store: Store) -> None:
        """The four token queues: (producer push, consumer pop) for each direction."""
        depth = self.cfg.dep_queue_depth
        links = {
            "l2g": ((load, "next"), (compute, "prev")),
            "g2l": ((compute, "prev"), (load, "next")),
            "g2s": ((compute, "next"), (store, "prev")),
            "s2g": ((store, "prev"), (compute, "next")),
        }
        for name, ((producer, p_side), (consumer, c_side)) in links.items():
            m.submodules[name] = queue = TokenQueue(depth)
            m.d.comb += [
                queue.push.eq(getattr(producer, f"{p_side}_push")),
                queue.pop.eq(getattr(consumer, f"{c_side}_pop")),
                getattr(producer, f"{p_side}_can_push").eq(queue.can_push),
                getattr(consumer, f"{c_side}_can_pop").eq(queue.can_pop),
            ]

    def _buffers(self, m: Module, load: Load, compute: Compute, store: Store) -> None:
        """The on-chip buffers, each with one write and one synchronous read port."""
        cfg = self.cfg
        shapes = {"uop": uop_layout(cfg)} | {k: elem_layout(cfg, k) for k in BASES[1:]}
        ports = {
            "uop": (compute.uop_wr, compute.uop_rd),
            "inp": (load.inp_wr, compute.inp_rd),
            "wgt": (load.wgt_wr, compute.wgt_rd),
            "acc": (compute.acc_wr, compute.acc_rd),
            "out": (compute.out_wr, store.out_rd),
        }
        for kind, (writer, reader) in ports.items():
            buffer = memory.Memory(shape=shapes[kind], depth=cfg.depth(kind), init=[])
            m.submodules[f"{kind}_buffer"] = buffer
            wiring.connect(m, writer, buffer.write_port())
            wiring.connect(m, reader, buffer.read_port())
