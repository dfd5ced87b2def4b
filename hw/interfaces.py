"""Signatures shared by the accelerator's units: DRAM ports, 2-D transfer commands, memory ports.

Units never speak AXI themselves. Each DRAM client has a `DramReadSignature` or
`DramWriteSignature` port whose requests are bus-aligned byte addresses and lengths in bus beats;
`hw.axi` turns them into AXI4 bursts and arbitrates. Read data comes back in request order.
"""

from amaranth.hdl import unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from isa.config import HwConfig
from isa.formats import PAD_BITS, SIZE_BITS

ADDR_BITS = 32
BEATS_BITS = 24


class DramRequest(data.Struct):
    """A read or write of `beats` consecutive bus beats starting at bus-aligned byte `addr`."""

    addr: unsigned(ADDR_BITS)
    beats: unsigned(BEATS_BITS)


def write_beat_layout(bus_bits: int) -> data.StructLayout:
    """One beat of write data with its byte strobes."""
    return data.StructLayout({"data": unsigned(bus_bits), "strb": unsigned(bus_bits // 8)})


class DramReadSignature(wiring.Signature):
    """A DRAM read client (client's view): requests out, data beats in, in request order."""

    def __init__(self, bus_bits: int):
        self.bus_bits = bus_bits
        super().__init__({
            "req": Out(stream.Signature(DramRequest)),
            "data": In(stream.Signature(unsigned(bus_bits))),
        })


class DramWriteSignature(wiring.Signature):
    """A DRAM write client (client's view): requests and beats out, `done` pulses per request.

    `done` is high for one cycle when every beat of a request has been acknowledged by DRAM
    (all AXI write responses received), so a unit may signal completion only after it.
    """

    def __init__(self, bus_bits: int):
        self.bus_bits = bus_bits
        super().__init__({
            "req": Out(stream.Signature(DramRequest)),
            "data": Out(stream.Signature(write_beat_layout(bus_bits))),
            "done": In(1),
        })


def transfer_layout(sram_addr_bits: int) -> data.StructLayout:
    """A 2-D transfer as the DMA engines take it: LOAD/STORE fields with byte addressing.

    `dram_addr` is the byte address of row 0 (window base + dram_base * element bytes) and
    `stride_bytes` the byte distance between rows (x_stride * element bytes). The engines treat
    the pads as zero when the transfer is a store.
    """
    return data.StructLayout({
        "sram_base": unsigned(max(sram_addr_bits, 1)),
        "dram_addr": unsigned(ADDR_BITS),
        "stride_bytes": unsigned(ADDR_BITS),
        "y_size": unsigned(SIZE_BITS),
        "x_size": unsigned(SIZE_BITS),
        "y_pad_0": unsigned(PAD_BITS),
        "y_pad_1": unsigned(PAD_BITS),
        "x_pad_0": unsigned(PAD_BITS),
        "x_pad_1": unsigned(PAD_BITS),
    })


def element_write_layout(sram_addr_bits: int, elem_bits: int) -> data.StructLayout:
    """One element delivered by a read engine, with the buffer index it belongs at."""
    return data.StructLayout({
        "addr": unsigned(max(sram_addr_bits, 1)),
        "data": unsigned(elem_bits),
    })


def sram_write_signature(cfg: HwConfig, kind: str, shape) -> wiring.Signature:
    """A unit's side of a buffer write port (it drives en, addr and data)."""
    return memory.WritePort.Signature(addr_width=cfg.index_bits(kind), shape=shape).flip()


def sram_read_signature(cfg: HwConfig, kind: str, shape) -> wiring.Signature:
    """A unit's side of a synchronous buffer read port (it drives en and addr, gets data)."""
    return memory.ReadPort.Signature(addr_width=cfg.index_bits(kind), shape=shape).flip()
