"""The host's AXI4-Lite register file, generated from the register map in `hw.regmap`."""

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.axi import AxiLiteSignature
from hw.regmap import REGISTERS, VERSION, WORD_BYTES, Field
from isa.config import HwConfig

ADDR_BITS = 12
DATA_BITS = WORD_BYTES * 8
# Counters that count a status input instead of a `count_<name>` input of their own.
STATUS_COUNTERS = {"CYCLES": "busy"}


def port_name(field: Field) -> str:
    """The RegisterFile port of an rw or w1s field."""
    return field.name.lower()


def count_port_name(counter_name: str) -> str:
    """The RegisterFile input that increments a counter register."""
    return f"count_{counter_name.lower()}"


class RegisterFile(wiring.Component):
    """The AXI4-Lite slave (4 KiB window, 32-bit data) holding the control and status registers.

    Every rw field of `hw.regmap` is an output port of its lower-case name (`irq_enable`,
    `insn_base`, `insn_count`, `uop_base`, ...), every w1s field a one-cycle pulse output
    (`start`). Each counter register has a `count_<name>` input that adds 1 per cycle it is high,
    except CYCLES, which counts the cycles `busy` is high; all clear when a run starts. `done`
    (a pulse from the core) sets STATUS.DONE until the next start; `irq` is DONE & IRQ_ENABLE, a
    level the host drops by starting the next run or clearing IRQ_ENABLE. START is ignored
    while `busy`. `dram_error` is shown as STATUS.DRAM_ERROR as it is (the top clears the AXI
    master's sticky error with `start`).

    Bus behaviour: AW and W are taken independently (each has a one-entry holding register), the
    write happens once both are there, and BRESP is OKAY. Writes honour WSTRB; writes to ro
    fields and unmapped offsets are ignored. Reads of unmapped offsets return 0 with RRESP OKAY,
    so a driver probing the window never takes a bus fault. The low two address bits are ignored.
    """

    def __init__(self, cfg: HwConfig):
        if not isinstance(cfg, HwConfig):
            raise TypeError(f"cfg must be an HwConfig, not {cfg!r}")
        self.cfg = cfg
        members = {
            "bus": In(AxiLiteSignature(addr_bits=ADDR_BITS, data_bits=DATA_BITS)),
            "busy": In(1),
            "done": In(1),
            "dram_error": In(1),
            "irq": Out(1),
        }
        for reg in REGISTERS:
            for field in reg.fields:
                if field.access != "ro":
                    members[port_name(field)] = Out(field.width)
            if reg.counter and reg.name not in STATUS_COUNTERS:
                members[count_port_name(reg.name)] = In(1)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        done_flag = Signal()
        counters = {
            reg.name: Signal(reg.width, name=reg.name.lower())
            for reg in REGISTERS if reg.counter
        }
        # What each ro field, and each w1s field on a read, shows.
        status = {
            "START": self.busy,
            "BUSY": self.busy,
            "DONE": done_flag,
            "DRAM_ERROR": self.dram_error,
            "CONFIG_ID": Const(self.cfg.config_id, 32),
            "VERSION": Const(VERSION, 32),
            **counters,
        }

        def value_of(field: Field):
            return getattr(self, port_name(field)) if field.access == "rw" else status[field.name]

        # -- writes: AW and W each wait in a holding register until the other arrives ---------
        aw_full, w_full = Signal(), Signal()
        aw_word = Signal(ADDR_BITS - 2)
        w_data = Signal(DATA_BITS)
        w_strb = Signal(DATA_BITS // 8)
        m.d.comb += [bus.awready.eq(~aw_full), bus.wready.eq(~w_full)]
        with m.If(bus.awvalid & bus.awready):
            m.d.sync += [aw_full.eq(1), aw_word.eq(bus.awaddr[2:])]
        with m.If(bus.wvalid & bus.wready):
            m.d.sync += [w_full.eq(1), w_data.eq(bus.wdata), w_strb.eq(bus.wstrb)]
        with m.If(bus.bvalid & bus.bready):
            m.d.sync += bus.bvalid.eq(0)

        commit = Signal()
        m.d.comb += commit.eq(aw_full & w_full & ~bus.bvalid)
        bit_enable = Cat(bit.replicate(8) for bit in w_strb)
        for reg in REGISTERS:
            for field in reg.fields:
                if field.access == "w1s":
                    m.d.sync += getattr(self, port_name(field)).eq(0)
        with m.If(commit):
            m.d.sync += [aw_full.eq(0), w_full.eq(0), bus.bvalid.eq(1)]
            with m.Switch(aw_word):
                for reg in REGISTERS:
                    for k in range(reg.words):
                        with m.Case(reg.offset // WORD_BYTES + k):
                            self._write_word(m, reg, k, w_data, bit_enable)

        # START is accepted only when idle; the run's bookkeeping restarts with its pulse.
        with m.If(self.busy):
            m.d.sync += self.start.eq(0)
        with m.If(self.done):
            m.d.sync += done_flag.eq(1)
        with m.If(self.start):
            m.d.sync += done_flag.eq(0)
        for name, count in counters.items():
            event = getattr(self, STATUS_COUNTERS.get(name, count_port_name(name)))
            with m.If(self.start):
                m.d.sync += count.eq(0)
            with m.Elif(event):
                m.d.sync += count.eq(count + 1)
        m.d.comb += self.irq.eq(done_flag & self.irq_enable)

        # -- reads: one at a time, answered the cycle after AR --------------------------------
        m.d.comb += bus.arready.eq(~bus.rvalid)
        with m.If(bus.arvalid & bus.arready):
            m.d.sync += bus.rvalid.eq(1)
            with m.Switch(bus.araddr[2:]):
                for reg in REGISTERS:
                    value = 0
                    for field in reg.fields:
                        value |= value_of(field)[:field.width] << field.lsb
                    for k in range(reg.words):
                        with m.Case(reg.offset // WORD_BYTES + k):
                            m.d.sync += bus.rdata.eq(value >> (k * DATA_BITS))
                with m.Default():
                    m.d.sync += bus.rdata.eq(0)
        with m.Elif(bus.rready):
            m.d.sync += bus.rvalid.eq(0)
        return m

    def _write_word(self, m: Module, reg, k: int, data, bit_enable):
        """Apply a write of `data` under `bit_enable` to word `k` of `reg`'s writable fields."""
        word_lo = k * DATA_BITS
        for field in reg.fields:
            lo = max(field.lsb, word_lo)
            hi = min(field.lsb + field.width, word_lo + DATA_BITS)
            if field.access == "ro" or lo >= hi:
                continue
            target = getattr(self, port_name(field))[lo - field.lsb:hi - field.lsb]
            new = data[lo - word_lo:hi - word_lo]
            enable = bit_enable[lo - word_lo:hi - word_lo]
            if field.access == "rw":
                m.d.sync += target.eq((target & ~enable) | (new & enable))
            else:
                m.d.sync += target.eq(new & enable)
