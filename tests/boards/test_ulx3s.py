"""The ULX3S host system in Amaranth's simulator, driven through its UART lines byte by byte."""

import struct

import numpy as np
import pytest
from amaranth.back import verilog

from boards.bitstream import pll_verilog
from boards.ulx3s import PLL_NAME, HostSystem, Ulx3sTop
from hw.host_bridge import READ_MEM, READ_REG, WRITE_MEM, WRITE_REG
from hw.regmap import REGISTERS_BY_NAME
from isa import ToolError, load_config
from loom.demo import sample_program
from sim.amaranth_backend import simulate
from sim.functional import FunctionalSim

SMALL = load_config("small")
DIVISOR = 4  # clock cycles per bit: the fastest the UART allows, to keep the simulation short


class Serial:
    """The host's end of the UART: sends and receives 8N1 bytes on the system's lines."""

    def __init__(self, dut):
        self.dut = dut

    async def send(self, ctx, data: bytes):
        """Send bytes, one stop bit and one idle bit each."""
        for byte in data:
            bits = [0, *((byte >> n) & 1 for n in range(8)), 1, 1]
            for bit in bits:
                ctx.set(self.dut.uart_rx, bit)
                await ctx.tick().repeat(DIVISOR)

    async def receive(self, ctx, count: int, timeout: int = 2000) -> bytes:
        """Receive `count` bytes, sampling the middle of each bit."""
        out = bytearray()
        for _ in range(count):
            for _ in range(timeout):
                if not ctx.get(self.dut.uart_tx):
                    break
                await ctx.tick()
            else:
                raise TimeoutError("no start bit from the system")
            await ctx.tick().repeat(DIVISOR + DIVISOR // 2)
            byte = 0
            for n in range(8):
                byte |= ctx.get(self.dut.uart_tx) << n
                await ctx.tick().repeat(DIVISOR)
            assert ctx.get(self.dut.uart_tx) == 1, "stop bit"
            out.append(byte)
        return bytes(out)

    async def command(self, ctx, opcode: int, fmt: str, *fields, reply: int) -> bytes:
        """Send a command and return its reply."""
        await self.send(ctx, bytes([opcode]) + struct.pack(fmt, *fields))
        return await self.receive(ctx, reply)


def run(bench, *, memory_bytes=4096, max_cycles=20_000):
    """Run an async testbench(ctx, serial) against a HostSystem of the small config."""
    dut = HostSystem(SMALL, memory_bytes=memory_bytes, divisor=DIVISOR)
    serial = Serial(dut)

    async def testbench(ctx):
        await ctx.tick().repeat(10)
        await bench(ctx, serial)

    simulate(dut, [testbench], max_cycles=max_cycles)


def test_register_write_then_read_through_serial_bytes():
    done = []

    async def bench(ctx, serial):
        insn_base = REGISTERS_BY_NAME["INSN_BASE"].offset
        status = await serial.command(ctx, WRITE_REG, "<HI", insn_base, 0x1234_5670, reply=1)
        assert status == b"\x00"
        value = await serial.command(ctx, READ_REG, "<H", insn_base, reply=4)
        assert struct.unpack("<I", value)[0] == 0x1234_5670
        config_id = await serial.command(ctx, READ_REG, "<H",
                                         REGISTERS_BY_NAME["CONFIG_ID"].offset, reply=4)
        assert struct.unpack("<I", config_id)[0] == SMALL.config_id
        done.append(True)

    run(bench)
    assert done


def test_memory_word_write_then_read():
    done = []

    async def bench(ctx, serial):
        for address in (0x4, 0xFF8):
            # neighbours in the same 64-bit row must keep their values
            other = address ^ 4
            assert await serial.command(ctx, WRITE_MEM, "<II", other, 0x0BAD_F00D, reply=1) == b"\0"
            assert await serial.command(ctx, WRITE_MEM, "<II", address, 0xCAFE_0000 + address,
                                        reply=1) == b"\0"
            value = await serial.command(ctx, READ_MEM, "<I", address, reply=4)
            assert struct.unpack("<I", value)[0] == 0xCAFE_0000 + address
            value = await serial.command(ctx, READ_MEM, "<I", other, reply=4)
            assert struct.unpack("<I", value)[0] == 0x0BAD_F00D
        done.append(True)

    run(bench)
    assert done


def test_unknown_opcodes_are_ignored():
    done = []

    async def bench(ctx, serial):
        await serial.send(ctx, b"\x00\xff\x7f")
        value = await serial.command(ctx, READ_REG, "<H", REGISTERS_BY_NAME["VERSION"].offset,
                                     reply=4)
        assert struct.unpack("<I", value)[0] == 0x0001_0000
        done.append(True)

    run(bench)
    assert done


@pytest.mark.slow
def test_sample_program_runs_through_the_serial_bridge():
    program, dram, _ = sample_program(seed=2)
    golden = dram.copy()
    FunctionalSim(program.config).run(program, golden)
    image = np.pad(dram, (0, -len(dram) % 4)).view("<u4")
    out = program.segment("C")
    nbytes = out.count * program.config.elem_bytes(out.mem)
    first, last = out.offset // 4, -(-(out.offset + nbytes) // 4)
    assert (golden[out.offset:out.offset + nbytes] != dram[out.offset:out.offset + nbytes]).any()
    got = []

    async def bench(ctx, serial):
        for index, word in enumerate(image):
            await serial.command(ctx, WRITE_MEM, "<II", 4 * index, int(word), reply=1)
        writes = [(REGISTERS_BY_NAME["INSN_BASE"].offset, program.insn_offset),
                  (REGISTERS_BY_NAME["INSN_COUNT"].offset, len(program.insns)),
                  (REGISTERS_BY_NAME["CONTROL"].offset, 0b11)]  # START | IRQ_ENABLE
        for offset, value in writes:
            await serial.command(ctx, WRITE_REG, "<HI", offset, value, reply=1)
        status = REGISTERS_BY_NAME["STATUS"].offset
        while not struct.unpack("<I", await serial.command(ctx, READ_REG, "<H", status,
                                                           reply=4))[0] & 0b10:
            pass
        assert ctx.get(serial.dut.led) & 1  # the interrupt LED
        for index in range(first, last):
            got.append(await serial.command(ctx, READ_MEM, "<I", 4 * index, reply=4))

    run(bench, max_cycles=400_000)
    memory = np.frombuffer(b"".join(got), np.uint8)
    start = out.offset - 4 * first
    np.testing.assert_array_equal(memory[start:start + nbytes],
                                  golden[out.offset:out.offset + nbytes])


@pytest.mark.synth
def test_a_pll_clock_comes_from_ecppll(tmp_path):
    text = pll_verilog(40, tmp_path)
    assert f"module {PLL_NAME}" in text and "EHXPLLL" in text and "CLKOP_DIV(15)" in text
    with pytest.raises(ToolError, match=r"cannot make 41\.3 MHz .* exactly"):
        pll_verilog(41.3, tmp_path)
    top = verilog.convert(Ulx3sTop(SMALL, memory_bytes=4096, clock_mhz=40), name="top",
                          emit_src=False)
    assert f"{PLL_NAME} pll (" in top
