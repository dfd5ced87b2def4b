"""The ULX3S-85F bitstream top: accelerator, on-chip "DRAM", a UART host bridge and LEDs.

```
 ftdi_txd ─▶ UartRx ─▶ HostBridge ─▶ AXI4-Lite ─▶ Accelerator ─ m_axi ─▶ AxiRam (block RAM)
 ftdi_rxd ◀─ UartTx ◀─┘          └── 32-bit host port ─────────────────────▶┘
```

The host speaks the byte protocol of `hw.host_bridge` (docs/boards.md) over the board's FTDI
UART, 8N1 at `baud` (1 Mbaud by default). The design runs on the 25 MHz oscillator directly, or
at `clock_mhz` from an EHXPLLL PLL (module `PLL_NAME`, whose Verilog `ecppll` writes; see
boards.bitstream). Pressing button F1, or a PLL out of lock, resets everything but the memory
contents.

LEDs: 0 the interrupt (DONE while CONTROL.IRQ_ENABLE), 1 DRAM traffic, 2 UART receive, 3 UART
transmit (each stretched to be visible), 7 a heartbeat of about 1.5 Hz.
"""

from amaranth.hdl import Cat, ClockDomain, ClockSignal, Const, Instance, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.cdc import ResetSynchronizer
from amaranth.lib.wiring import In, Out

from hw.axi_ram import AxiRam
from hw.host_bridge import HostBridge
from hw.top import Accelerator, flatten_ports
from hw.uart import UartRx, UartTx, baud_divisor
from isa.config import HwConfig

TOP_NAME = "loom_ulx3s"
PLL_NAME = "loom_pll"
OSCILLATOR_MHZ = 25
DEFAULT_BAUD = 1_000_000
# 128 KiB of on-chip memory as the accelerator's DRAM: 64 DP16KD next to the 1x8x8 default's
# buffers (see docs/boards.md for the budget).
DEFAULT_MEMORY_BYTES = 128 * 1024
LED_STRETCH_BITS = 20  # an activity LED stays on for 2**20 cycles (42 ms at 25 MHz)
HEARTBEAT_BIT = 23


class HostSystem(wiring.Component):
    """Accelerator, on-chip memory, UART host bridge and LEDs in the `sync` domain."""

    def __init__(self, cfg: HwConfig, *, memory_bytes: int, divisor: int):
        self.cfg = cfg
        self.memory_bytes = memory_bytes
        self.divisor = divisor
        super().__init__({"uart_rx": In(1, init=1), "uart_tx": Out(1, init=1), "led": Out(8)})

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        m.submodules.accel = accel = Accelerator(cfg)
        m.submodules.ram = ram = AxiRam(cfg.axi_data_bits,
                                        self.memory_bytes * 8 // cfg.axi_data_bits)
        m.submodules.rx = rx = UartRx(self.divisor)
        m.submodules.tx = tx = UartTx(self.divisor)
        m.submodules.bridge = bridge = HostBridge()
        m.d.comb += [rx.rx.eq(self.uart_rx), self.uart_tx.eq(tx.tx)]
        wiring.connect(m, rx.data, bridge.rx)
        wiring.connect(m, bridge.tx, tx.data)
        wiring.connect(m, bridge.mem, ram.host)
        # the bridge masters the register bus; the accelerator masters the memory's AXI port
        flatten_ports(m, accel, "s_axil_", bridge.axil, accel.axil_signature, master=True)
        flatten_ports(m, accel, "m_axi_", ram.axi, accel.axi_signature, master=False)

        heartbeat = Signal(HEARTBEAT_BIT + 1)
        m.d.sync += heartbeat.eq(heartbeat + 1)
        activity = [accel.m_axi_arvalid | accel.m_axi_awvalid, ~rx.rx, ~tx.tx]
        lights = [accel.irq, *(_stretch(m, event, f"led{n + 1}") for n, event in
                               enumerate(activity))]
        m.d.comb += self.led.eq(Cat(*lights, Const(0, 3), heartbeat[-1]))
        return m


class Ulx3sTop(wiring.Component):
    """`HostSystem` on the ULX3S pins: 25 MHz clock, FTDI UART, LEDs, reset button F1."""

    clk_25mhz: In(1)
    ftdi_txd: In(1, init=1)
    ftdi_rxd: Out(1, init=1)
    btn_reset: In(1)
    led: Out(8)

    def __init__(self, cfg: HwConfig, *, memory_bytes: int = DEFAULT_MEMORY_BYTES,
                 baud: int = DEFAULT_BAUD, clock_mhz: float = OSCILLATOR_MHZ):
        self.clock_mhz = clock_mhz
        self.system = HostSystem(cfg, memory_bytes=memory_bytes,
                                 divisor=baud_divisor(clock_mhz * 1e6, baud))
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain()
        if self.clock_mhz == OSCILLATOR_MHZ:
            m.d.comb += ClockSignal("sync").eq(self.clk_25mhz)
            locked = Const(1)
        else:
            locked = Signal()
            m.submodules.pll = Instance(PLL_NAME, i_clkin=self.clk_25mhz,
                                        o_clkout0=ClockSignal("sync"), o_locked=locked)
        m.submodules.reset_sync = ResetSynchronizer(self.btn_reset | ~locked)
        m.submodules.system = system = self.system
        m.d.comb += [system.uart_rx.eq(self.ftdi_txd), self.ftdi_rxd.eq(system.uart_tx),
                     self.led.eq(system.led)]
        return m


def _stretch(m: Module, event, name: str):
    """A light that stays on for 2**LED_STRETCH_BITS cycles after each `event`."""
    timer = Signal(LED_STRETCH_BITS, name=f"{name}_timer")
    with m.If(event):
        m.d.sync += timer.eq(-1)
    with m.Elif(timer != 0):
        m.d.sync += timer.eq(timer - 1)
    return timer != 0
