"""The execute pipeline: runs one GEMM or ALU instruction at a time over its micro-op loop nest.

Stages of one micro-op execution (a "uop"), one new uop per cycle:

- **S0 issue**: the (i, j, k) loop counters step and the uop at k is read from the UOP buffer.
  The index offsets i*factor_out + j*factor_in are kept incrementally (adders, no multipliers).
- **S1 index**: the uop arrives; dst/src/wgt = uop field + offset, registered into S2.
- **S2 read**: GEMM reads INP[src] and WGT[wgt]. ALU reads ACC[dst], and with use_imm=0 also
  ACC[src] in a second cycle (the ACC buffer has one read port), so those uops issue one per
  two cycles, except that a uop whose src is the row the previous ACC[src] read of the same
  instruction fetched reuses that row (the *source cache*) and issues in one cycle. The uop
  *fires* when its last read is issued.
- **ACC data** arrives ACC_READ_CYCLES = 2 cycles after its read: the RAM's synchronous read,
  then a register (so the block RAM's slow output feeds only a flip-flop).
- **GEMM**: the GemmCore takes the INP/WGT data one cycle after the fire and returns the sums
  `GemmCore.latency` cycles later. ACC[dst] is read two cycles before the sums arrive, so the
  add and write of the accumulator lie in one cycle: write at fire + 1 + GemmCore.latency.
- **ALU**: the TensorAlu takes ACC[dst] and ACC[src] (or the broadcast immediate; MULR takes
  the immediate field as its shift besides ACC[src]) two cycles after the fire and returns the
  result TensorAlu.latency cycles later: write at fire + 2 + TensorAlu.latency.
- **write**: ACC[dst] and OUT[dst] (each lane wrapped to out_bits) are written in the same cycle.

So a uop is written 3 + GemmCore.latency cycles after it issues (6 on 1x4x4, 7 on 1x16x16) or
4 + TensorAlu.latency = 7 cycles (8 with two ACC reads); `done` pulses the cycle after the last
write, when the buffers hold it, and a new instruction may be taken in that same cycle. An ALU
with use_imm=0 whose consecutive uops share src rows thus costs one cycle per uop plus one per
change of src row.

Sequential semantics (every read sees every earlier write of the instruction):

- **Forwarding** of the writes in flight: the ACC read port is synchronous and need not be
  transparent, so a read issued in the cycle of a write to the same row would return the old row,
  and the register behind the port misses the write of the next cycle. The pipeline remembers
  the last two writes and substitutes the data of the later matching one. This makes GEMM
  hazard-free: back-to-back uops accumulating into one row run at one uop per cycle.
- **Stalls** for the ALU: a uop waits in S2 while an earlier uop whose write has not yet been
  issued will write a row it reads (its dst, or its src when use_imm=0). A chain of dependent
  ALU uops therefore runs at one uop per TensorAlu.latency + 1 = 4 cycles (one more with two
  reads).
- **Source cache**: the row lives in the TensorAlu's y register, which keeps its value except in
  the cycle an ACC[src] read arrives; the pipeline holds its index and a valid bit. A new
  instruction empties it (so a LOAD ACC or anything else between instructions cannot leave it
  stale), and so does the fire of a uop that will write the cached row: a reusing uop whose dst
  is the row, or a filling uop whose dst is its own src. No earlier write to the row can be in
  flight when it is filled, since the hazard check holds the filling uop until such writes are
  issued (those issued in the read's cycle and the next are forwarded).

Ports:

- `insn`: a stream of raw 128-bit instruction words, viewed through the GEMM and ALU layouts of
  `hw.layouts`; a word is taken while the pipeline is idle or in its `done` cycle. An empty loop
  nest (uop_end <= uop_bgn, iter_out or iter_in 0), or an opcode other than GEMM and ALU,
  completes one cycle after it is taken, writing nothing.
- `busy`: high from the cycle after a word is taken through its `done` cycle.
- `done`: one cycle, after the last ACC/OUT write of the instruction has landed.
- `gemm_uops`, `alu_uops`: one cycle per uop, in the cycle of its write.
- `uop_rd`, `inp_rd`, `wgt_rd`, `acc_rd`: synchronous read ports (one cycle latency; the ACC
  port may be transparent or not; its data is registered once more here). `acc_wr`, `out_wr`:
  write ports, used in the same cycles.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.alu import TensorAlu
from hw.gemm import GemmCore
from hw.interfaces import sram_read_signature, sram_write_signature
from hw.layouts import elem_layout, insn_layouts, uop_layout
from isa.config import HwConfig
from isa.formats import INSN_BITS, Opcode

# The loop nest is read through the GEMM view for both opcodes: the two formats share these.
LOOP_FIELDS = (
    "uop_bgn", "uop_end", "iter_out", "iter_in",
    "dst_factor_out", "dst_factor_in", "src_factor_out", "src_factor_in",
)
# The indices of a uop; each has a factor_out and a factor_in field.
INDICES = ("dst", "src", "wgt")
# Cycles from an ACC read to its data: the RAM's synchronous read, then a register (an ECP5 block
# RAM's output is too slow to feed the accumulate adder or the forwarding in the same cycle).
ACC_READ_CYCLES = 2


class ExecutePipeline(wiring.Component):
    """Runs GEMM and ALU instructions: loop nest, buffer reads, GEMM core or ALU, ACC/OUT writes."""

    def __init__(self, cfg: HwConfig):
        if not isinstance(cfg, HwConfig):
            raise TypeError(f"cfg must be an HwConfig, not {cfg!r}")
        gemm_fmt, alu_fmt = cfg.insn_formats[Opcode.GEMM], cfg.insn_formats[Opcode.ALU]
        assert all(gemm_fmt.field(n) == alu_fmt.field(n) for n in LOOP_FIELDS)
        self.cfg = cfg
        acc = elem_layout(cfg, "acc")
        super().__init__({
            "insn": In(stream.Signature(unsigned(INSN_BITS))),
            "busy": Out(1),
            "done": Out(1),
            "gemm_uops": Out(1),
            "alu_uops": Out(1),
            "uop_rd": Out(sram_read_signature(cfg, "uop", uop_layout(cfg))),
            "inp_rd": Out(sram_read_signature(cfg, "inp", elem_layout(cfg, "inp"))),
            "wgt_rd": Out(sram_read_signature(cfg, "wgt", elem_layout(cfg, "wgt"))),
            "acc_rd": Out(sram_read_signature(cfg, "acc", acc)),
            "acc_wr": Out(sram_write_signature(cfg, "acc", acc)),
            "out_wr": Out(sram_write_signature(cfg, "out", elem_layout(cfg, "out"))),
        })

    def elaborate(self, platform):
        """Loop counters, the S1/S2 stages, hazard check, forwarding, both datapaths, writes."""
        m = Module()
        cfg = self.cfg
        m.submodules.gemm = gemm = GemmCore(cfg)
        m.submodules.alu = alu = TensorAlu(cfg)
        layouts = insn_layouts(cfg)
        uops = uop_layout(cfg)
        acc = elem_layout(cfg, "acc")
        acc_index_bits = cfg.index_bits("acc")

        # -- the instruction ---------------------------------------------------------------
        word = Signal(INSN_BITS)
        # The layouts cover only a format's used low bits; the rest of the word is zero.
        insn = data.View(layouts[Opcode.GEMM], word[: layouts[Opcode.GEMM].size])
        alu_insn = data.View(layouts[Opcode.ALU], word[: layouts[Opcode.ALU].size])
        new = data.View(layouts[Opcode.GEMM], self.insn.payload[: layouts[Opcode.GEMM].size])
        is_gemm = insn.opcode == Opcode.GEMM
        two_reads = ~is_gemm & ~alu_insn.use_imm
        empty = (
            ((new.opcode != Opcode.GEMM) & (new.opcode != Opcode.ALU))
            | (new.uop_end <= new.uop_bgn) | (new.iter_out == 0) | (new.iter_in == 0)
        )
        accept = self.insn.valid & self.insn.ready

        # -- S0: loop counters and the uop read ----------------------------------------------
        issuing = Signal()
        k = Signal.like(insn.uop_end)
        i = Signal.like(insn.iter_out)
        j = Signal.like(insn.iter_in)
        # base = i * factor_out and off = base + j * factor_in, per index, modulo its width.
        base = {n: Signal(uops[n].shape, name=f"{n}_base") for n in INDICES}
        off = {n: Signal(uops[n].shape, name=f"{n}_off") for n in INDICES}

        s1_valid = Signal()
        s1_off = {n: Signal(uops[n].shape, name=f"s1_{n}_off") for n in INDICES}
        s2_valid = Signal()
        s2 = {n: Signal(uops[n].shape, name=f"s2_{n}") for n in INDICES}
        phase = Signal()  # of a two-read ALU uop: 0 reads ACC[dst], 1 reads ACC[src]

        hazard = Signal()
        fire = Signal()
        # The source row cache: the ACC row at cache_src, last read as an ALU source, is held in
        # the TensorAlu's y register; a uop with that src skips its second read.
        cache_valid = Signal()
        cache_src = Signal(acc_index_bits)
        reuse = Signal()
        m.d.comb += fire.eq(s2_valid & ~hazard & (phase | ~two_reads | reuse))
        s2_free = ~s2_valid | fire
        s1_free = ~s1_valid | s2_free
        issue = issuing & s1_free

        with m.If(accept):
            m.d.sync += [
                word.eq(self.insn.payload),
                self.busy.eq(1),
                issuing.eq(~empty),
                k.eq(new.uop_bgn),
                i.eq(0),
                j.eq(0),
            ]
            m.d.sync += [s.eq(0) for s in (*base.values(), *off.values())]
        with m.Elif(self.done):
            m.d.sync += self.busy.eq(0)

        with m.If(issue):
            with m.If(k + 1 != insn.uop_end):
                m.d.sync += k.eq(k + 1)
            with m.Else():
                m.d.sync += k.eq(insn.uop_bgn)
                with m.If(j + 1 != insn.iter_in):
                    m.d.sync += j.eq(j + 1)
                    m.d.sync += [off[n].eq(off[n] + insn[f"{n}_factor_in"]) for n in INDICES]
                with m.Else():
                    m.d.sync += j.eq(0)
                    with m.If(i + 1 != insn.iter_out):
                        m.d.sync += i.eq(i + 1)
                        for n in INDICES:
                            step = base[n] + insn[f"{n}_factor_out"]
                            m.d.sync += [base[n].eq(step), off[n].eq(step)]
                    with m.Else():
                        m.d.sync += issuing.eq(0)

        # The UOP read port holds its data while S1 cannot move on.
        m.d.comb += [self.uop_rd.addr.eq(k), self.uop_rd.en.eq(s1_free)]
        with m.If(s1_free):
            m.d.sync += s1_valid.eq(issue)
            m.d.sync += [s1_off[n].eq(off[n]) for n in INDICES]

        # -- S1: indices ------------------------------------------------------------------
        with m.If(s2_free):
            m.d.sync += s2_valid.eq(s1_valid)
            m.d.sync += [s2[n].eq(self.uop_rd.data[n] + s1_off[n]) for n in INDICES]
        s2_src_acc = s2["src"][:acc_index_bits]
        m.d.comb += reuse.eq(two_reads & ~phase & cache_valid & (cache_src == s2_src_acc))

        # -- S2: reads, and the track of fired uops ------------------------------------------
        # track_valid[d]/track_dst[d]: the uop that fired d cycles ago (d = 0: firing now).
        reads = ACC_READ_CYCLES
        depth = max(1 + gemm.latency, reads + alu.latency)
        track_valid = [fire] + [Signal(name=f"track_valid_{d}") for d in range(1, depth + 1)]
        track_dst = [s2["dst"]] + [
            Signal(acc_index_bits, name=f"track_dst_{d}") for d in range(1, depth + 1)
        ]
        for d in range(1, depth + 1):
            m.d.sync += [track_valid[d].eq(track_valid[d - 1]), track_dst[d].eq(track_dst[d - 1])]

        # An ALU uop fired d cycles ago writes at d = reads + alu.latency; the writes issued in
        # the cycle of a read and the reads - 1 cycles after it are forwarded to it, so only d in
        # [1, alu.latency] is a hazard.
        m.d.comb += hazard.eq(~is_gemm & s2_valid & Cat(
            track_valid[d] & (
                (track_dst[d] == s2["dst"]) | (two_reads & (track_dst[d] == s2_src_acc))
            )
            for d in range(1, alu.latency + 1)
        ).any())
        with m.If(s2_valid & ~hazard & two_reads & ~reuse):
            m.d.sync += phase.eq(~phase)
        # A fire that reads ACC[src] fills the cache; one that will write the cached row (or the
        # row it is filling) empties it, and so does a new instruction. No other write to the
        # row can be in flight at the fill: the hazard check held the uop until they were issued.
        with m.If(accept):
            m.d.sync += cache_valid.eq(0)
        with m.Elif(fire & two_reads):
            with m.If(~reuse):
                m.d.sync += [cache_src.eq(s2_src_acc), cache_valid.eq(s2["dst"] != s2_src_acc)]
            with m.Elif(s2["dst"] == cache_src):
                m.d.sync += cache_valid.eq(0)

        m.d.comb += [
            self.inp_rd.addr.eq(s2["src"]),
            self.inp_rd.en.eq(fire & is_gemm),
            self.wgt_rd.addr.eq(s2["wgt"]),
            self.wgt_rd.en.eq(fire & is_gemm),
        ]
        with m.If(is_gemm):
            # Read the accumulator so that it arrives together with the sums.
            m.d.comb += [
                self.acc_rd.addr.eq(track_dst[1 + gemm.latency - reads]),
                self.acc_rd.en.eq(track_valid[1 + gemm.latency - reads]),
            ]
        with m.Else():
            m.d.comb += [
                self.acc_rd.addr.eq(Mux(phase, s2_src_acc, s2["dst"])),
                self.acc_rd.en.eq(s2_valid & ~hazard),
            ]

        # -- the registered ACC data, and forwarding of the writes the read missed -----------
        # A read issued in cycle t samples the RAM at the end of t (the write of cycle t may or
        # may not be seen) and its data is used in t + 2: the writes of t and t + 1 are
        # substituted when their row matches, the later one first. The row compares are made a
        # cycle early and registered.
        assert reads == 2
        read_addr = Signal.like(self.acc_rd.addr)  # of the read issued last cycle
        ram_data = Signal(acc)
        last_en = Signal()  # the write of last cycle ...
        last_addr = Signal.like(self.acc_wr.addr)
        last_data = Signal(acc)
        prev_data = Signal(acc)  # ... and the data of the one before
        hit_last = Signal()  # the write of last cycle matches the read of two cycles ago
        hit_prev = Signal()  # the write of two cycles ago does
        m.d.sync += [
            read_addr.eq(self.acc_rd.addr),
            ram_data.eq(self.acc_rd.data),
            last_en.eq(self.acc_wr.en),
            last_addr.eq(self.acc_wr.addr),
            last_data.eq(self.acc_wr.data),
            prev_data.eq(last_data),
            hit_last.eq(self.acc_wr.en & (self.acc_wr.addr == read_addr)),
            hit_prev.eq(last_en & (last_addr == read_addr)),
        ]
        acc_data = Signal(acc)
        m.d.comb += acc_data.eq(Mux(hit_last, last_data, Mux(hit_prev, prev_data, ram_data)))

        # -- the datapaths ----------------------------------------------------------------
        m.d.comb += [
            gemm.inp.eq(self.inp_rd.data),
            gemm.wgt.eq(self.wgt_rd.data),
            gemm.valid.eq(track_valid[1] & is_gemm),
        ]
        x_hold = Signal(acc)  # ACC[dst] of a two-read uop, waiting for ACC[src]
        # capture[d]/reused[d]: the read issued d cycles ago was a two-read uop's ACC[dst];
        # the uop fired d cycles ago reuses the cached source row.
        capture = [s2_valid & ~hazard & two_reads & ~phase & ~reuse]
        reused = [fire & reuse]
        for d in range(1, reads + 1):
            capture.append(Signal(name=f"capture_{d}"))
            reused.append(Signal(name=f"reused_{d}"))
            m.d.sync += [capture[d].eq(capture[d - 1]), reused[d].eq(reused[d - 1])]
        capture, reused = capture[reads], reused[reads]
        with m.If(capture):
            m.d.sync += x_hold.eq(acc_data)
        with m.If(alu_insn.use_imm):
            m.d.comb += alu.x.eq(acc_data)
            m.d.comb += [alu.y[lane].eq(alu_insn.imm) for lane in range(acc.length)]
        with m.Else():
            # y takes ACC[src] only in the cycle it arrives, so the ALU keeps the cached row.
            m.d.comb += [
                alu.x.eq(Mux(reused, acc_data, x_hold)),
                alu.y.eq(acc_data),
                alu.keep_y.eq(~track_valid[reads] | reused),
            ]
        m.d.comb += [
            alu.op.eq(alu_insn.alu_op),
            alu.shift.eq(alu_insn.imm),  # MULR's shift; a legal one is never negative
            alu.valid.eq(track_valid[reads] & ~is_gemm),
        ]

        # -- ACC and OUT writes ----------------------------------------------------------
        result = Signal(acc)
        with m.If(is_gemm):
            m.d.comb += [
                self.acc_wr.en.eq(gemm.valid_out),
                self.acc_wr.addr.eq(track_dst[1 + gemm.latency]),
            ]
            with m.If(~insn.reset):
                m.d.comb += [
                    result[lane].eq(acc_data[lane] + gemm.sums[lane])
                    for lane in range(acc.length)
                ]
        with m.Else():
            m.d.comb += [
                self.acc_wr.en.eq(alu.valid_out),
                self.acc_wr.addr.eq(track_dst[reads + alu.latency]),
                result.eq(alu.result),
            ]
        m.d.comb += [
            self.acc_wr.data.eq(result),
            self.out_wr.en.eq(self.acc_wr.en),
            self.out_wr.addr.eq(self.acc_wr.addr),
            *(self.out_wr.data[lane].eq(result[lane]) for lane in range(acc.length)),
            self.gemm_uops.eq(gemm.valid_out),
            self.alu_uops.eq(alu.valid_out),
        ]

        # -- completion ----------------------------------------------------------------
        writes_pending = Mux(
            is_gemm,
            Cat(track_valid[1 : gemm.latency + 2]).any(),
            Cat(track_valid[1 : reads + alu.latency + 1]).any(),
        )
        m.d.comb += [
            self.done.eq(self.busy & ~issuing & ~s1_valid & ~s2_valid & ~writes_pending),
            self.insn.ready.eq(~self.busy | self.done),
        ]
        return m
