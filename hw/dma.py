"""2-D DMA engines: LOAD (DRAM rows into buffer elements, with zero padding) and STORE (back).

Both engines split a transfer the same way: a row planner walks the rows, issues one DRAM
request per data row and queues a short description of every row, and an element path streams
the row's elements one per cycle. The queue lets the planner run up to `ROW_QUEUE_DEPTH` rows
ahead, so the DRAM latency of later rows hides behind the elements of earlier ones.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from hw.interfaces import (
    ADDR_BITS,
    DramReadSignature,
    DramRequest,
    DramWriteSignature,
    element_write_layout,
    transfer_layout,
)
from isa.formats import PAD_BITS, SIZE_BITS

# Rows planned ahead of the element path. Eight rows of a few elements each cover DRAM
# latencies of a few dozen cycles; an entry is only 1 + log2(bus/element) bits.
ROW_QUEUE_DEPTH = 8

# A padded row is up to 2**SIZE_BITS - 1 elements plus two pads, so row and column counters of
# padded transfers need one more bit than the size fields.
_PADDED_BITS = SIZE_BITS + 1


class _Geometry:
    """How elements of `elem_bits` map onto beats of a `bus_bits` bus (validated)."""

    def __init__(self, elem_bits: int, sram_addr_bits: int, bus_bits: int):
        for name, value in (("elem_bits", elem_bits), ("sram_addr_bits", sram_addr_bits),
                            ("bus_bits", bus_bits)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an integer, not {value!r}")
        if elem_bits <= 0 or elem_bits % 8:
            raise ValueError(f"elem_bits must be a positive multiple of 8, not {elem_bits}")
        if sram_addr_bits < 1:
            raise ValueError(f"sram_addr_bits must be at least 1, not {sram_addr_bits}")
        if bus_bits < 8 or bus_bits & (bus_bits - 1):
            raise ValueError(f"bus_bits must be a power of two of at least 8, not {bus_bits}")
        self.elem_bits = elem_bits
        self.bus_bits = bus_bits
        self.elem_bytes = elem_bits // 8
        self.bus_bytes = bus_bits // 8
        self.bus_shift = self.bus_bytes.bit_length() - 1
        if self.elem_bytes % self.bus_bytes == 0:
            self.beats_per_elem, self.slots = self.elem_bytes // self.bus_bytes, 1
        elif self.bus_bytes % self.elem_bytes == 0:
            self.beats_per_elem, self.slots = 1, self.bus_bytes // self.elem_bytes
        else:
            raise ValueError(
                f"a {self.elem_bytes}-byte element neither divides nor is a multiple of the "
                f"{self.bus_bytes}-byte bus (elem_bits={elem_bits}, bus_bits={bus_bits})"
            )
        # slots is a power of two here: it divides the power-of-two bus width.
        self.slot_bits = self.slots.bit_length() - 1

    def row_layout(self) -> data.StructLayout:
        """What the element path needs to know about one row: all zeros, or its first slot."""
        # No slot field for wide elements: zero-width wires upset Verilog linters.
        slot = {"slot": unsigned(self.slot_bits)} if self.slot_bits else {}
        return data.StructLayout({"zero": 1, **slot})


class _RowPlanner(wiring.Component):
    """Walks the rows of a transfer: a DRAM request per data row, a queue entry per row.

    `start` latches `xfer` (x_size must be nonzero); `busy` is high while rows remain to plan.
    Each data row's request is issued no later than its queue entry becomes visible on `rows`,
    so an element path that follows `rows` never waits on a request that was not sent.
    """

    def __init__(self, geom: _Geometry, sram_addr_bits: int, *, padded: bool):
        self._geom = geom
        self._padded = padded
        super().__init__({
            "start": In(1),
            "xfer": In(transfer_layout(sram_addr_bits)),
            "req": Out(stream.Signature(DramRequest)),
            "rows": Out(stream.Signature(geom.row_layout())),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        """Build the row counter, the request register and the row queue."""
        m = Module()
        g = self._geom
        queue = m.submodules.queue = SyncFIFO(width=g.row_layout().size, depth=ROW_QUEUE_DEPTH)

        y = Signal(_PADDED_BITS)
        last_row = Signal(_PADDED_BITS)
        data_bgn = Signal(_PADDED_BITS)
        data_end = Signal(_PADDED_BITS)
        row_addr = Signal(ADDR_BITS)
        stride = Signal(ADDR_BITS)
        row_bytes = Signal(range(((1 << SIZE_BITS) - 1) * g.elem_bytes + 1))

        x = self.xfer
        pad_0, pad_1 = (x.y_pad_0, x.y_pad_1) if self._padded else (0, 0)
        rows = pad_0 + x.y_size + pad_1
        with m.If(self.start):
            m.d.sync += [
                self.busy.eq(rows != 0),
                y.eq(0),
                last_row.eq(rows - 1),
                data_bgn.eq(pad_0),
                data_end.eq(pad_0 + x.y_size),
                row_addr.eq(x.dram_addr),
                stride.eq(x.stride_bytes),
                row_bytes.eq(x.x_size * g.elem_bytes),
            ]

        entry = Signal(g.row_layout())
        # A wide element's rows are bus-aligned (base registers are), so only narrow ones have
        # a first slot; the low address bits below an element are ignored.
        slot = row_addr[g.bus_shift - g.slot_bits:g.bus_shift]
        m.d.comb += entry.zero.eq((y < data_bgn) | (y >= data_end))
        if g.slot_bits:
            m.d.comb += entry.slot.eq(slot)
        req = self.req
        advance = self.busy & queue.w_rdy & (entry.zero | ~req.valid | req.ready)
        m.d.comb += [queue.w_data.eq(entry), queue.w_en.eq(advance)]
        with m.If(advance & ~entry.zero):
            lead = slot * g.elem_bytes
            m.d.sync += [
                req.valid.eq(1),
                req.payload.addr.eq(Cat(Const(0, g.bus_shift), row_addr[g.bus_shift:])),
                req.payload.beats.eq((lead + row_bytes + g.bus_bytes - 1) >> g.bus_shift),
                row_addr.eq(row_addr + stride),
            ]
        with m.Elif(req.ready):
            m.d.sync += req.valid.eq(0)
        with m.If(advance):
            m.d.sync += y.eq(y + 1)
            with m.If(y == last_row):
                m.d.sync += self.busy.eq(0)

        m.d.comb += [
            self.rows.payload.eq(queue.r_data),
            self.rows.valid.eq(queue.r_rdy),
            queue.r_en.eq(self.rows.ready),
        ]
        return m


class ReadEngine2D(wiring.Component):
    """Executes a LOAD: streams the padded 2-D footprint of a transfer as indexed elements.

    Elements leave on `out` in buffer order starting at `sram_base`, zeros for the pads, at one
    per cycle (one per `elem_bits / bus_bits` cycles for elements wider than the bus), and
    `out.ready` is honoured. `busy` is high from the cycle after a command is accepted until the
    cycle after its last element was handed over; `cmd.ready` is high only when idle. A command
    with `x_size = 0` is a NOP: it is accepted and nothing happens.
    """

    def __init__(self, elem_bits: int, sram_addr_bits: int, bus_bits: int):
        self._geom = _Geometry(elem_bits, sram_addr_bits, bus_bits)
        self._sram_addr_bits = sram_addr_bits
        super().__init__({
            "cmd": In(stream.Signature(transfer_layout(sram_addr_bits))),
            "dram": Out(DramReadSignature(bus_bits)),
            "out": Out(stream.Signature(element_write_layout(sram_addr_bits, elem_bits))),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        """Build the row planner and the element path behind it."""
        m = Module()
        g = self._geom
        planner = m.submodules.planner = _RowPlanner(g, self._sram_addr_bits, padded=True)
        wiring.connect(m, planner.req, wiring.flipped(self.dram.req))

        row = planner.rows
        busy = planner.busy | row.valid
        cmd = self.cmd.payload
        accept = self.cmd.valid & ~busy
        m.d.comb += [
            self.busy.eq(busy),
            self.cmd.ready.eq(~busy),
            planner.xfer.eq(cmd),
            planner.start.eq(accept & (cmd.x_size != 0)),
        ]

        x = Signal(_PADDED_BITS)  # column of the padded row; back to 0 after each row
        data_bgn = Signal(PAD_BITS)
        data_end = Signal(_PADDED_BITS)
        x_last = Signal(_PADDED_BITS)
        addr = Signal(self._sram_addr_bits)
        with m.If(accept):
            m.d.sync += [
                data_bgn.eq(cmd.x_pad_0),
                data_end.eq(cmd.x_pad_0 + cmd.x_size),
                x_last.eq(cmd.x_pad_0 + cmd.x_size + cmd.x_pad_1 - 1),
                addr.eq(cmd.sram_base),
            ]

        beat = self.dram.data
        in_data = ~row.payload.zero & (x >= data_bgn) & (x < data_end)
        if g.slots > 1:
            slot = (row.payload.slot + x - data_bgn)[:g.slot_bits]
            elem, elem_valid = beat.payload.word_select(slot, g.elem_bits), beat.valid
            # A beat is used up by its last slot or by the row's last element.
            beat_ready = self.out.ready & ((slot == g.slots - 1) | (x == data_end - 1))
        elif g.beats_per_elem > 1:
            part = Signal(range(g.beats_per_elem))
            gathered = Signal(g.bus_bits * (g.beats_per_elem - 1))
            last_part = part == g.beats_per_elem - 1
            elem, elem_valid = Cat(gathered, beat.payload), beat.valid & last_part
            beat_ready = ~last_part | self.out.ready
            with m.If(beat.valid & beat.ready):
                # Earlier beats shift down, so the lowest address ends in the low bits.
                m.d.sync += [
                    gathered.eq(Cat(gathered[g.bus_bits:], beat.payload)),
                    part.eq(Mux(last_part, 0, part + 1)),
                ]
        else:
            elem, elem_valid, beat_ready = beat.payload, beat.valid, self.out.ready

        take = self.out.valid & self.out.ready
        row_end = x == x_last
        m.d.comb += [
            beat.ready.eq(row.valid & in_data & beat_ready),
            self.out.valid.eq(row.valid & (~in_data | elem_valid)),
            self.out.payload.addr.eq(addr),
            self.out.payload.data.eq(Mux(in_data, elem, 0)),
            row.ready.eq(take & row_end),
        ]
        with m.If(take):
            m.d.sync += [addr.eq(addr + 1), x.eq(Mux(row_end, 0, x + 1))]
        return m


class WriteEngine2D(wiring.Component):
    """Executes a STORE: reads buffer elements in order and writes them as 2-D DRAM rows.

    One DRAM request per row covers the row's bytes from the bus-aligned address below it; the
    strobes of a row that starts or ends mid-beat cover only its own elements. The synchronous
    read port is stalled (`en` low holds its data) while `dram.data` is not ready. `busy` stays
    high until the `done` of every row came back; `cmd.ready` is high only when idle. Pads are
    ignored and a command with `x_size = 0` or `y_size = 0` is a NOP.
    """

    def __init__(self, elem_bits: int, sram_addr_bits: int, bus_bits: int):
        self._geom = _Geometry(elem_bits, sram_addr_bits, bus_bits)
        self._sram_addr_bits = sram_addr_bits
        super().__init__({
            "cmd": In(stream.Signature(transfer_layout(sram_addr_bits))),
            "sram": Out(memory.ReadPort.Signature(addr_width=sram_addr_bits,
                                                  shape=unsigned(elem_bits)).flip()),
            "dram": Out(DramWriteSignature(bus_bits)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        """Build the row planner, the stallable read stage and the beat packer."""
        m = Module()
        g = self._geom
        planner = m.submodules.planner = _RowPlanner(g, self._sram_addr_bits, padded=False)
        wiring.connect(m, planner.req, wiring.flipped(self.dram.req))

        # Every row's acknowledgement comes after its last beat, so rows awaiting `done` cover
        # all the work of a command.
        pending = Signal(SIZE_BITS)
        busy = pending != 0
        cmd = self.cmd.payload
        accept = self.cmd.valid & ~busy
        start = accept & (cmd.x_size != 0)
        m.d.comb += [
            self.busy.eq(busy),
            self.cmd.ready.eq(~busy),
            planner.xfer.eq(cmd),
            planner.start.eq(start),
        ]
        with m.If(start):
            m.d.sync += pending.eq(cmd.y_size)
        with m.Elif(self.dram.done):
            m.d.sync += pending.eq(pending - 1)

        x = Signal(SIZE_BITS)
        x_last = Signal(SIZE_BITS)
        addr = Signal(self._sram_addr_bits)
        with m.If(accept):
            m.d.sync += [x_last.eq(cmd.x_size - 1), addr.eq(cmd.sram_base)]

        # The element on `sram.data` (read last cycle) and where it goes in its beat.
        held = Signal()
        held_slot = Signal(max(g.slot_bits, 1))
        held_last = Signal()

        beat = self.dram.data
        all_bytes = (1 << g.bus_bytes) - 1
        if g.slots > 1:
            packed = Signal(beat.payload.shape())  # earlier elements of the beat being built
            flush = (held_slot == g.slots - 1) | held_last
            m.d.comb += [
                beat.payload.eq(packed),
                beat.payload.data.word_select(held_slot, g.elem_bits).eq(self.sram.data),
                beat.payload.strb.word_select(held_slot, g.elem_bytes).eq(
                    (1 << g.elem_bytes) - 1),
                beat.valid.eq(held & flush),
            ]
            release = held & (~flush | beat.ready)
            with m.If(release):
                m.d.sync += packed.eq(Mux(flush, 0, beat.payload))
        elif g.beats_per_elem > 1:
            part = Signal(range(g.beats_per_elem))
            last_part = part == g.beats_per_elem - 1
            m.d.comb += [
                beat.payload.data.eq(self.sram.data.word_select(part, g.bus_bits)),
                beat.payload.strb.eq(all_bytes),
                beat.valid.eq(held),
            ]
            release = held & beat.ready & last_part
            with m.If(held & beat.ready):
                m.d.sync += part.eq(Mux(last_part, 0, part + 1))
        else:
            m.d.comb += [
                beat.payload.data.eq(self.sram.data),
                beat.payload.strb.eq(all_bytes),
                beat.valid.eq(held),
            ]
            release = held & beat.ready

        row = planner.rows
        issue = row.valid & (~held | release)
        row_end = x == x_last
        m.d.comb += [
            self.sram.addr.eq(addr),
            self.sram.en.eq(issue),
            row.ready.eq(issue & row_end),
        ]
        with m.If(issue):
            m.d.sync += [
                addr.eq(addr + 1),
                x.eq(Mux(row_end, 0, x + 1)),
                held.eq(1),
                held_last.eq(row_end),
            ]
            if g.slot_bits:
                m.d.sync += held_slot.eq((row.payload.slot + x)[:g.slot_bits])
        with m.Elif(release):
            m.d.sync += held.eq(0)
        return m
