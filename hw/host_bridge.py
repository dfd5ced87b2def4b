"""A byte-protocol host bridge: register and memory accesses from a serial link (docs/boards.md).

Commands are an opcode byte and little-endian fields; every command gets a reply:

| opcode | command | then | reply |
|---|---|---|---|
| 0x01 | write register | offset (2 bytes), value (4) | status (1 byte: the AXI BRESP, 0 = OKAY) |
| 0x02 | read register | offset (2) | value (4) |
| 0x03 | write memory word | byte address (4), value (4) | status (1 byte, always 0) |
| 0x04 | read memory word | byte address (4) | value (4) |

Registers are the 32-bit words of the accelerator's AXI4-Lite window; memory words are 32 bits
of the on-chip memory (`hw.axi_ram.HostPortSignature`). Any other opcode byte is ignored, so a
host resynchronises by sending ten zero bytes (no command takes more than eight argument bytes).
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.axi import AxiLiteSignature
from hw.axi_ram import HostPortSignature

WRITE_REG, READ_REG, WRITE_MEM, READ_MEM = 0x01, 0x02, 0x03, 0x04
# Argument bytes after each opcode.
ARG_BYTES = {WRITE_REG: 6, READ_REG: 2, WRITE_MEM: 8, READ_MEM: 4}


class HostBridge(wiring.Component):
    """Bytes in, bytes out: drives an AXI4-Lite master and a memory host port for the host."""

    rx: In(stream.Signature(8))
    tx: Out(stream.Signature(8))
    axil: Out(AxiLiteSignature())
    mem: Out(HostPortSignature())

    def elaborate(self, platform):
        m = Module()
        rx, tx, axil, mem = self.rx, self.tx, self.axil, self.mem
        opcode = Signal(8)
        args = Signal(64)
        count = Signal(range(9))  # argument bytes still to come
        reg_addr, reg_data = args[:16], args[16:48]
        mem_addr, mem_data = args[:32], args[32:64]
        reply = Signal(32)
        reply_left = Signal(range(5))  # reply bytes still to send
        aw_done, w_done = Signal(), Signal()

        m.d.comb += [tx.payload.eq(reply[:8]), tx.valid.eq(reply_left != 0)]
        with m.If(tx.valid & tx.ready):
            m.d.sync += [reply.eq(reply >> 8), reply_left.eq(reply_left - 1)]

        m.d.comb += [axil.awaddr.eq(reg_addr), axil.araddr.eq(reg_addr),
                     axil.wdata.eq(reg_data), axil.wstrb.eq(0xF),
                     mem.addr.eq(mem_addr), mem.wdata.eq(mem_data)]

        with m.FSM():
            with m.State("OPCODE"):
                m.d.comb += rx.ready.eq(reply_left == 0)
                with m.If(rx.valid & rx.ready):
                    m.d.sync += [opcode.eq(rx.payload), args.eq(0)]
                    with m.Switch(rx.payload):
                        for code, n in ARG_BYTES.items():
                            with m.Case(code):
                                m.d.sync += count.eq(n)
                                m.next = "ARGS"
            with m.State("ARGS"):
                m.d.comb += rx.ready.eq(1)
                with m.If(rx.valid):
                    # Bytes arrive low first: shift them in from the top of an 8-byte field.
                    m.d.sync += [args.eq(args >> 8 | rx.payload << 56), count.eq(count - 1)]
                    with m.If(count == 1):
                        m.next = "ALIGN"
            # Move the arguments to the bottom: 8 - ARG_BYTES[opcode] shifts of a byte.
            with m.State("ALIGN"), m.Switch(opcode):
                for code, n in ARG_BYTES.items():
                    with m.Case(code):
                        m.d.sync += args.eq(args >> (8 * (8 - n)))
                        m.next = {WRITE_REG: "REG_WRITE", READ_REG: "REG_READ",
                                  WRITE_MEM: "MEM", READ_MEM: "MEM"}[code]
            with m.State("REG_WRITE"):
                m.d.comb += [axil.awvalid.eq(~aw_done), axil.wvalid.eq(~w_done)]
                with m.If(axil.awready):
                    m.d.sync += aw_done.eq(1)
                with m.If(axil.wready):
                    m.d.sync += w_done.eq(1)
                m.d.comb += axil.bready.eq(1)
                with m.If(axil.bvalid):
                    m.d.sync += [aw_done.eq(0), w_done.eq(0), reply.eq(axil.bresp),
                                 reply_left.eq(1)]
                    m.next = "OPCODE"
            with m.State("REG_READ"):
                m.d.comb += axil.arvalid.eq(1)
                with m.If(axil.arready):
                    m.next = "REG_DATA"
            with m.State("REG_DATA"):
                m.d.comb += axil.rready.eq(1)
                with m.If(axil.rvalid):
                    m.d.sync += [reply.eq(axil.rdata), reply_left.eq(4)]
                    m.next = "OPCODE"
            with m.State("MEM"):
                m.d.comb += [mem.valid.eq(1), mem.write.eq(opcode == WRITE_MEM)]
                with m.If(mem.done):
                    m.d.sync += [reply.eq(mem.rdata), reply_left.eq(4)]
                    with m.If(opcode == WRITE_MEM):
                        m.d.sync += [reply.eq(0), reply_left.eq(1)]
                    m.next = "OPCODE"
        return m
