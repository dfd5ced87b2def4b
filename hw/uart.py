"""An 8N1 UART: a receiver and a transmitter of bytes on `lib.stream`, `divisor` clocks per bit."""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out


def baud_divisor(clock_hz: float, baud: int) -> int:
    """Clock cycles per bit; a ValueError when the rate would be more than 2% off."""
    divisor = round(clock_hz / baud)
    if divisor < 4 or abs(clock_hz / divisor - baud) > 0.02 * baud:
        raise ValueError(f"{baud} baud cannot be made from {clock_hz / 1e6:g} MHz "
                         f"(divisor {clock_hz / baud:.2f})")
    return divisor


def _check_divisor(divisor) -> None:
    if not isinstance(divisor, int) or divisor < 4:
        raise ValueError(f"divisor must be an integer of at least 4, not {divisor!r}")


class UartRx(wiring.Component):
    """Bytes from the `rx` line; a byte not taken before the next one arrives is replaced."""

    def __init__(self, divisor: int):
        _check_divisor(divisor)
        self.divisor = divisor
        super().__init__({"rx": In(1, init=1), "data": Out(stream.Signature(8))})

    def elaborate(self, platform):
        m = Module()
        line = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, line, init=1)
        timer = Signal(range(self.divisor * 3 // 2 + 1))
        bits = Signal(range(10))
        shift = Signal(8)
        with m.If(self.data.ready):
            m.d.sync += self.data.valid.eq(0)
        with m.If(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.FSM():
            with m.State("IDLE"), m.If(~line):
                # Sample the middle of data bit 0: one and a half bits after the edge.
                m.d.sync += [timer.eq(self.divisor * 3 // 2 - 1), bits.eq(0)]
                m.next = "DATA"
            with m.State("DATA"), m.If(timer == 0):
                m.d.sync += [shift.eq(shift >> 1 | line << 7), bits.eq(bits + 1),
                             timer.eq(self.divisor - 1)]
                with m.If(bits == 7):
                    m.next = "STOP"
            with m.State("STOP"), m.If(timer == 0):
                with m.If(line):  # a framing error drops the byte
                    m.d.sync += [self.data.payload.eq(shift), self.data.valid.eq(1)]
                m.next = "WAIT_IDLE"
            with m.State("WAIT_IDLE"), m.If(line):
                m.next = "IDLE"
        return m


class UartTx(wiring.Component):
    """Bytes onto the `tx` line, one start bit, eight data bits LSB first, one stop bit."""

    def __init__(self, divisor: int):
        _check_divisor(divisor)
        self.divisor = divisor
        super().__init__({"tx": Out(1, init=1), "data": In(stream.Signature(8))})

    def elaborate(self, platform):
        m = Module()
        timer = Signal(range(self.divisor))
        bits = Signal(range(11))
        frame = Signal(10, init=0x3FF)  # stop bit, data, start bit; shifted out LSB first
        m.d.comb += [self.tx.eq(frame[0]), self.data.ready.eq(bits == 0)]
        with m.If(self.data.valid & self.data.ready):
            m.d.sync += [frame.eq((self.data.payload << 1) | (1 << 9)), bits.eq(10),
                         timer.eq(self.divisor - 1)]
        with m.Elif(bits != 0):
            with m.If(timer == 0):
                m.d.sync += [frame.eq(frame >> 1 | (1 << 9)), bits.eq(bits - 1),
                             timer.eq(self.divisor - 1)]
            with m.Else():
                m.d.sync += timer.eq(timer - 1)
        return m
