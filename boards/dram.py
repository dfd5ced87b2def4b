"""DRAM timing presets for the cycle-accurate simulation (`sim.rtl`): latency, rate, bursts.

A `DramModel` describes what the accelerator's AXI4 master sees at the FPGA fabric clock: the
cycles from a read request to its first data beat and from the last write beat to its response,
the data rate per direction (AXI reads and writes travel on separate channels) and how many
bursts per direction the memory system accepts before answering them. Benchmarks use
`zynq7020` unless told otherwise (`DEFAULT`).

The board numbers are estimates, not measurements: the data rate is the width of the board's
high-performance PS-PL port at the fabric clock (Zynq-7000 TRM UG585 ch. 5: 64-bit S_AXI_HP
ports; Zynq UltraScale+ TRM UG1085: 128-bit S_AXI_HP*_FPD ports); the latencies are typical
round trips through the port FIFOs, the PS interconnect and the DDR controller (about 250-300 ns,
so 30-40 cycles at a 100-150 MHz fabric clock); the outstanding-burst limit is the depth of the
ports' command queues (about 8). Calibrate them against a board before trusting absolute cycles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from isa.errors import ConfigError


@dataclass(frozen=True)
class DramModel:
    """Timing of the memory behind the accelerator's AXI4 master, in fabric clock cycles."""

    name: str
    read_latency: int  # cycles from an AR handshake to its first R beat
    write_latency: int  # cycles from a burst's last W beat to its B response
    bytes_per_cycle: float | None  # data rate per direction; None: one bus beat per cycle
    max_outstanding: int | None  # bursts per direction in flight; None: no limit
    doc: str = ""

    def __post_init__(self):
        for name in ("read_latency", "write_latency"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"DRAM model {self.name}: {name} must be an integer >= 1, "
                                  f"not {value!r}")
        rate = self.bytes_per_cycle
        if rate is not None and not (isinstance(rate, int | float) and math.isfinite(rate)
                                     and rate > 0):
            raise ConfigError(f"DRAM model {self.name}: bytes_per_cycle must be a positive "
                              f"number or None, not {rate!r}")
        limit = self.max_outstanding
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise ConfigError(f"DRAM model {self.name}: max_outstanding must be an integer >= 1 "
                              f"or None, not {limit!r}")

    def to_dict(self) -> dict:
        """Plain JSON-ready form."""
        return {
            "name": self.name,
            "read_latency": self.read_latency,
            "write_latency": self.write_latency,
            "bytes_per_cycle": self.bytes_per_cycle,
            "max_outstanding": self.max_outstanding,
        }


PRESETS: dict[str, DramModel] = {
    model.name: model
    for model in (
        DramModel("ideal", 1, 1, None, None,
                  "one-cycle latency, one beat per cycle, unlimited bursts: the core's own limit"),
        DramModel("zynq7020", 36, 24, 8.0, 8,
                  "Zynq-7020 (PYNQ-Z1, ZedBoard): 64-bit S_AXI_HP port, DDR3, 100-150 MHz "
                  "fabric (estimate)"),
        DramModel("ultra96", 40, 24, 16.0, 16,
                  "Ultra96 (ZU3EG): 128-bit S_AXI_HP*_FPD port, LPDDR4, 150-300 MHz fabric "
                  "(estimate)"),
        DramModel("de10_nano", 40, 24, 8.0, 8,
                  "DE10-Nano (Cyclone V SoC): FPGA-to-SDRAM port of the HPS controller, 32-bit "
                  "DDR3-800 (3.2 GB/s peak, shared with the ARM cores), 100 MHz fabric "
                  "(estimate)"),
        DramModel("arty_a7", 30, 20, 8.0, 4,
                  "Arty A7-100T: MIG controller, 16-bit DDR3L-667 (1.33 GB/s peak), 100 MHz "
                  "fabric, ~60% efficiency (estimate)"),
        DramModel("ulx3s_sdram", 12, 6, 1.5, 1,
                  "ULX3S: 16-bit SDR SDRAM clocked with the fabric (2 bytes a cycle peak, row "
                  "and refresh overheads), one burst at a time (estimate)"),
    )
}
DEFAULT = "zynq7020"


def dram_model(name_or_model: str | DramModel) -> DramModel:
    """A preset by name (a DramModel passes through); an unknown name raises ConfigError."""
    if isinstance(name_or_model, DramModel):
        return name_or_model
    try:
        return PRESETS[name_or_model]
    except (KeyError, TypeError):
        raise ConfigError(
            f"no DRAM preset named {name_or_model!r}; presets: {', '.join(PRESETS)}"
        ) from None
