# amaranth: UnusedElaboratable=no
# (the parameter check constructs a component that fails validation and never elaborates)
"""RegisterFile over AXI4-Lite: reset values, rw/ro/w1s behaviour, START, counters, irq, ID."""

import pytest
from axi_models import AxiLiteMaster, simulate

from hw.regmap import REGISTERS, REGISTERS_BY_NAME, VERSION, WORD_BYTES, Field, Register
from hw.regs import STATUS_COUNTERS, RegisterFile, count_port_name, port_name
from isa import load_config

CFG = load_config("default")
REG = REGISTERS_BY_NAME
RW_FIELDS = [(r, f) for r in REGISTERS for f in r.fields if f.access == "rw"]
EVENT_COUNTERS = [r.name for r in REGISTERS if r.counter and r.name not in STATUS_COUNTERS]


def addr(name: str, word: int = 0) -> int:
    """Byte address of word `word` of register `name`."""
    return REG[name].offset + word * WORD_BYTES


def run(dut, *benches, background=()):
    """Run `benches` one after another in one testbench against `dut`."""

    async def bench(ctx):
        for b in benches:
            await b(ctx)

    simulate(dut, [bench], background=background, max_cycles=5_000)


def test_map_offsets_are_the_documented_ones():
    offsets = {r.name: r.offset for r in REGISTERS}
    assert offsets["CONTROL"] == 0x00 and offsets["STATUS"] == 0x04
    assert offsets["INSN_BASE"] == 0x08 and offsets["OUT_BASE"] == 0x20
    assert offsets["CYCLES"] == 0x30 and REG["CYCLES"].words == 2
    assert offsets["FETCH_BUSY"] == 0x40 and offsets["ALU_UOPS"] == 0x60
    assert offsets["CONFIG_ID"] == 0xF0 and offsets["VERSION"] == 0xF4
    assert REG["CONTROL"].field("START").mask == 1
    assert REG["CONTROL"].field("IRQ_ENABLE").mask == 2
    assert [f.mask for f in REG["STATUS"].fields] == [1, 2, 4]


def test_register_describes_itself_as_plain_data():
    control = REG["CONTROL"].describe()
    assert control["offset"] == 0 and control["words"] == 1 and not control["counter"]
    assert control["fields"][0] == {
        "name": "START", "lsb": 0, "width": 1, "access": "w1s", "doc": REG["CONTROL"].fields[0].doc
    }
    assert REG["CYCLES"].describe()["words"] == 2


def test_map_rejects_bad_entries():
    with pytest.raises(ValueError, match="access must be one of"):
        Field("X", 0, 1, "wo", "")
    with pytest.raises(ValueError, match="not word-aligned"):
        Register("X", 0x2, "", (Field("X", 0, 32, "rw", ""),))
    with pytest.raises(ValueError, match="overlaps"):
        Register("X", 0x0, "", (Field("A", 0, 2, "rw", ""), Field("B", 1, 1, "rw", "")))
    with pytest.raises(TypeError, match="cfg must be an HwConfig"):
        RegisterFile("default")


def test_reset_values_and_read_only_registers():
    dut = RegisterFile(CFG)
    host = AxiLiteMaster(dut.bus)

    async def bench(ctx):
        for reg in REGISTERS:
            for k in range(reg.words):
                value = await host.read(ctx, reg.offset + k * WORD_BYTES)
                expected = {"CONFIG_ID": CFG.config_id, "VERSION": VERSION}.get(reg.name, 0)
                assert value == expected, reg.name
        for offset in (0x24, 0x3C, 0xEC, 0xF8, 0xFFC):
            assert await host.read(ctx, offset) == 0, f"unmapped {offset:#x}"
            await host.write(ctx, offset, 0xFFFF_FFFF)
        for name in ("STATUS", "CONFIG_ID", "VERSION", "FETCH_BUSY"):
            before = await host.read(ctx, addr(name))
            await host.write(ctx, addr(name), 0x5A5A_5A5A)
            assert await host.read(ctx, addr(name)) == before, name

    run(dut, bench)


def test_rw_registers_drive_their_ports_and_honour_strobes():
    dut = RegisterFile(CFG)
    host = AxiLiteMaster(dut.bus)

    async def bench(ctx):
        values = {}
        for i, (reg, field) in enumerate(RW_FIELDS):
            values[field.name] = (0x1234_5678 * (i + 1)) & ((1 << field.width) - 1)
            # Alternate which of AW and W comes first, and by how much.
            await host.write(ctx, reg.offset, values[field.name] << field.lsb,
                             w_delay=(-3, 0, 2)[i % 3])
        for reg, field in RW_FIELDS:
            assert ctx.get(getattr(dut, port_name(field))) == values[field.name], field.name
            assert await host.read(ctx, reg.offset) & field.mask == values[field.name] << field.lsb
        await host.write(ctx, addr("INSN_BASE"), 0xAABB_CCDD, strb=0b0101)
        expected = (values["INSN_BASE"] & 0xFF00_FF00) | 0x00BB_00DD
        assert await host.read(ctx, addr("INSN_BASE")) == expected
        assert ctx.get(dut.insn_base) == expected

    run(dut, bench)


class FakeCore:
    """Answers START like the accelerator: busy for `cycles` cycles, events, then a done pulse.

    Event counter i is high on every (i + 2)-th busy cycle, so each counter ends differently.
    """

    def __init__(self, dut, cycles: int):
        self.dut = dut
        self.cycles = cycles
        self.starts = 0

    def expected(self) -> dict[str, int]:
        """Counter values after one run."""
        counts = {name: self.cycles // (i + 2) for i, name in enumerate(EVENT_COUNTERS)}
        return counts | {"CYCLES": self.cycles}

    async def run(self, ctx):
        """Serve starts forever (a background testbench)."""
        dut = self.dut
        while True:
            # One-shot waits: a background testbench left inside `until` when the simulation
            # ends complains as it is discarded.
            _, _, start = await ctx.tick().sample(dut.start)
            if not start:
                continue
            self.starts += 1
            ctx.set(dut.busy, 1)
            for cycle in range(1, self.cycles + 1):
                for i, name in enumerate(EVENT_COUNTERS):
                    ctx.set(getattr(dut, count_port_name(name)), cycle % (i + 2) == 0)
                await ctx.tick()
            for name in EVENT_COUNTERS:
                ctx.set(getattr(dut, count_port_name(name)), 0)
            ctx.set(dut.busy, 0)
            ctx.set(dut.done, 1)
            await ctx.tick()
            ctx.set(dut.done, 0)


async def wait_done(ctx, host, limit=200):
    """Poll STATUS until DONE, as a driver would; returns STATUS."""
    for _ in range(limit):
        status = await host.read(ctx, addr("STATUS"))
        if status & REG["STATUS"].field("DONE").mask:
            return status
    raise TimeoutError("DONE never set")


def test_start_pulse_counters_and_irq():
    dut = RegisterFile(CFG)
    host = AxiLiteMaster(dut.bus)
    core = FakeCore(dut, cycles=40)
    start = REG["CONTROL"].field("START").mask
    irq_enable = REG["CONTROL"].field("IRQ_ENABLE").mask
    busy = REG["STATUS"].field("BUSY").mask

    async def one_run(ctx):
        await host.write(ctx, addr("CONTROL"), start | irq_enable)
        assert await host.read(ctx, addr("CONTROL")) == start | irq_enable  # START reads busy
        assert await host.read(ctx, addr("STATUS")) == busy
        assert not ctx.get(dut.irq)
        await wait_done(ctx, host)
        assert ctx.get(dut.irq)
        for name, value in core.expected().items():
            got = [await host.read(ctx, addr(name, k)) for k in range(REG[name].words)]
            assert sum(v << (32 * k) for k, v in enumerate(got)) == value, name

    async def bench(ctx):
        await one_run(ctx)
        # The next start clears DONE, irq and the counters before counting afresh.
        await one_run(ctx)
        assert core.starts == 2
        await host.write(ctx, addr("CONTROL"), 0)
        assert not ctx.get(dut.irq), "irq follows IRQ_ENABLE"
        assert await host.read(ctx, addr("STATUS")) == REG["STATUS"].field("DONE").mask

    run(dut, bench, background=[core.run])


def test_start_is_one_cycle_and_ignored_while_busy():
    dut = RegisterFile(CFG)
    host = AxiLiteMaster(dut.bus)
    pulses = []

    async def watch(ctx):
        cycle = 0
        async for _, _, start in ctx.tick().sample(dut.start):
            if start:
                pulses.append(cycle)
            cycle += 1

    async def bench(ctx):
        await host.write(ctx, addr("CONTROL"), 1)
        await ctx.tick().repeat(3)
        assert len(pulses) == 1
        ctx.set(dut.busy, 1)
        await host.write(ctx, addr("CONTROL"), 1)
        await ctx.tick().repeat(3)
        assert len(pulses) == 1, "START while busy must be ignored"
        ctx.set(dut.busy, 0)
        await host.write(ctx, addr("CONTROL"), 1, strb=0b1110)  # byte 0 not written
        await ctx.tick().repeat(3)
        assert len(pulses) == 1, "START under a zero strobe"
        await host.write(ctx, addr("CONTROL"), 1)
        await ctx.tick().repeat(3)
        assert len(pulses) == 2

    run(dut, bench, background=[watch])


def test_status_shows_dram_error():
    dut = RegisterFile(CFG)
    host = AxiLiteMaster(dut.bus)

    async def bench(ctx):
        ctx.set(dut.dram_error, 1)
        assert await host.read(ctx, addr("STATUS")) == REG["STATUS"].field("DRAM_ERROR").mask
        ctx.set(dut.dram_error, 0)
        assert await host.read(ctx, addr("STATUS")) == 0

    run(dut, bench)


@pytest.mark.parametrize("preset", ["small", "int4"])
def test_config_id_follows_the_config(preset):
    cfg = load_config(preset)
    dut = RegisterFile(cfg)
    host = AxiLiteMaster(dut.bus)

    async def bench(ctx):
        assert await host.read(ctx, addr("CONFIG_ID")) == cfg.config_id

    run(dut, bench)
