"""A place-and-route harness: the accelerator behind two shift chains, so it needs five pins.

The accelerator's flat AXI ports are about 380 signals, more than an ECP5-85F package has pins.
The harness feeds every input from a serial-in shift register and loads every output into a
serial-out shift register, so nothing is optimized away and the timing that nextpnr reports is
the accelerator's own (the chains are one flip-flop to the next). Not meant for a real board.
"""

from amaranth.hdl import Cat, Module, Shape, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.top import Accelerator
from isa.config import HwConfig

HARNESS_NAME = "loom_pnr_harness"


class ShiftHarness(wiring.Component):
    """The accelerator of a config with its ports on a serial-in and a serial-out shift chain."""

    si: In(1)
    load: In(1)
    so: Out(1)

    def __init__(self, cfg: HwConfig):
        self.cfg = cfg
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.accel = accel = Accelerator(self.cfg)
        inputs, outputs = [], []
        for name, member in accel.signature.members.items():
            (outputs if member.flow == Out else inputs).append(getattr(accel, name))

        width = sum(Shape.cast(port.shape()).width for port in inputs)
        chain_in = Signal(width)
        m.d.sync += chain_in.eq(Cat(self.si, chain_in[:-1]))
        m.d.comb += Cat(*inputs).eq(chain_in)

        outs = Cat(*outputs)
        chain_out = Signal(len(outs))
        with m.If(self.load):
            m.d.sync += chain_out.eq(outs)
        with m.Else():
            m.d.sync += chain_out.eq(chain_out[1:])
        m.d.comb += self.so.eq(chain_out[0])
        return m
