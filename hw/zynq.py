"""A Verilog wrapper of the accelerator for a Vivado block design on a Zynq (docs/boards.md).

`loom_zynq` has the port names and X_INTERFACE_INFO attributes Vivado's interface inference
expects: `aclk`, `aresetn` (active low, synchronous), `m_axi_*` (AXI4 master, for an S_AXI_HP
port of the PS), `s_axi_*` (AXI4-Lite slave, behind M_AXI_GP0) and `irq` (an interrupt, level
high, for IRQ_F2P; not named `interrupt`, a word Verilator's lint reserves for C++). It
instantiates `loom_accel` unchanged; `write_zynq` puts both modules in one file.
"""

from __future__ import annotations

import json
from pathlib import Path

from amaranth.hdl import Shape
from amaranth.lib.wiring import Out

from hw.top import TOP_NAME, top_signature
from hw.verilog import generate, manifest
from isa.config import HwConfig

WRAPPER_NAME = "loom_zynq"
AXIMM = "xilinx.com:interface:aximm:1.0"
# accelerator port prefix -> (wrapper prefix, Vivado bus name)
BUSES = {"m_axi_": "m_axi", "s_axil_": "s_axi"}


def _bus_parameters(cfg: HwConfig, bus: str) -> str:
    if bus == "m_axi":
        return (f"XIL_INTERFACENAME m_axi, PROTOCOL AXI4, DATA_WIDTH {cfg.axi_data_bits}, "
                "ADDR_WIDTH 32, ID_WIDTH 1, MAX_BURST_LENGTH 256, HAS_BURST 1, HAS_CACHE 1, "
                "HAS_PROT 1, HAS_LOCK 0, HAS_QOS 0, HAS_REGION 0, HAS_WSTRB 1, HAS_BRESP 1, "
                "HAS_RRESP 1, SUPPORTS_NARROW_BURST 0, NUM_READ_OUTSTANDING 8, "
                "NUM_WRITE_OUTSTANDING 8")
    return ("XIL_INTERFACENAME s_axi, PROTOCOL AXI4LITE, DATA_WIDTH 32, ADDR_WIDTH 12, "
            "HAS_PROT 1, HAS_WSTRB 1, HAS_BRESP 1, HAS_RRESP 1")


def zynq_wrapper(cfg: HwConfig, *, clock_hz: int = 100_000_000) -> str:
    """Verilog text of the `loom_zynq` wrapper module around `loom_accel` for a config."""
    ports = [
        (f'(* X_INTERFACE_INFO = "xilinx.com:signal:clock:1.0 aclk CLK" *)\n'
         f'  (* X_INTERFACE_PARAMETER = "ASSOCIATED_BUSIF m_axi:s_axi, ASSOCIATED_RESET aresetn, '
         f'FREQ_HZ {clock_hz}" *)\n  input wire aclk'),
        ('(* X_INTERFACE_INFO = "xilinx.com:signal:reset:1.0 aresetn RST" *)\n'
         '  (* X_INTERFACE_PARAMETER = "POLARITY ACTIVE_LOW" *)\n  input wire aresetn'),
        ('(* X_INTERFACE_INFO = "xilinx.com:signal:interrupt:1.0 irq INTERRUPT" *)\n'
         '  (* X_INTERFACE_PARAMETER = "SENSITIVITY LEVEL_HIGH" *)\n  output wire irq'),
    ]
    connections = [".clk(aclk)", ".rst(~aresetn)", ".irq(irq)"]
    first = set()
    for name, member in top_signature(cfg).members.items():
        prefix = next((p for p in BUSES if name.startswith(p)), None)
        if prefix is None:
            continue
        bus, signal = BUSES[prefix], name.removeprefix(prefix)
        width = Shape.cast(member.shape).width
        direction = "output" if member.flow == Out else "input"
        attributes = f'(* X_INTERFACE_INFO = "{AXIMM} {bus} {signal.upper()}" *)\n  '
        if bus not in first:
            first.add(bus)
            attributes += f'(* X_INTERFACE_PARAMETER = "{_bus_parameters(cfg, bus)}" *)\n  '
        vector = f"[{width - 1}:0] " if width > 1 else ""
        ports.append(f"{attributes}{direction} wire {vector}{bus}_{signal}")
        connections.append(f".{name}({bus}_{signal})")
    body = ",\n    ".join(connections)
    return (f"// Vivado block-design wrapper of {TOP_NAME} for {cfg.name} "
            f"(config ID {cfg.config_id_hex}); see docs/boards.md.\n"
            f"module {WRAPPER_NAME} (\n  " + ",\n  ".join(ports) + "\n);\n"
            f"  {TOP_NAME} accel (\n    {body}\n  );\nendmodule\n")


def write_zynq(cfg: HwConfig, out_dir: str | Path) -> dict:
    """Write `loom_zynq.v` (wrapper and accelerator) and `loom_zynq.json`; return a summary."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{WRAPPER_NAME}.v"
    path.write_text(zynq_wrapper(cfg) + "\n" + generate(cfg))
    (out / f"{WRAPPER_NAME}.json").write_text(json.dumps(
        manifest(cfg) | {"wrapper": WRAPPER_NAME, "clock": "aclk",
                         "reset": "aresetn (active low, synchronous)", "interrupt": "irq"},
        indent=1))
    return {"verilog": str(path), "top": WRAPPER_NAME, "config_name": cfg.name,
            "config_id": cfg.config_id_hex}
