"""Runs a compiled model: accelerated layers on a simulator backend, everything else on the host.

The quantized graph executes in order with the integer reference's host kernels; each node that
was lowered to a Program instead packs its input into the accelerator's layout, runs the Program
on the chosen backend (the functional simulator, or the cycle-accurate RTL simulation) and
unpacks the output. The report lists, per node, where it ran, its MACs, the bytes the
accelerator moved, and (on the RTL backend) cycles and utilization.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from compiler.ir import Node
from compiler.lower import LoweredConv
from compiler.model_file import CompiledModel
from compiler.qreference import run_integer
from isa.errors import LoomError

BACKENDS = ("functional", "rtl")


@dataclass
class LayerReport:
    """What one node did: where it ran, work, traffic and (RTL) cycles."""

    node: str
    op: str
    target: str
    macs: int = 0
    bytes_moved: int = 0
    cycles: int | None = None
    utilization: float | None = None


@dataclass
class RunReport:
    """Per-node reports of one inference and the backend that produced them."""

    backend: str
    layers: list[LayerReport] = field(default_factory=list)

    @property
    def cycles(self) -> int | None:
        """Accelerator cycles of the whole inference (RTL backend only)."""
        cycles = [layer.cycles for layer in self.layers if layer.target == "accel"]
        return None if any(c is None for c in cycles) else sum(cycles)

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {"backend": self.backend, "cycles": self.cycles,
                "layers": [asdict(layer) for layer in self.layers]}


class Backend:
    """Runs layer Programs on one simulator, reusing it across layers and inferences."""

    def __init__(self, name: str, model: CompiledModel):
        if name not in BACKENDS:
            raise LoomError(f"unknown backend {name!r}; backends: {', '.join(BACKENDS)}")
        self.name = name
        if name == "functional":
            from sim.functional import FunctionalSim

            self.sim = FunctionalSim(model.config)
        else:
            from sim.rtl import RtlSim

            self.sim = RtlSim(model.config)

    def run_layer(self, layer: LoweredConv, x: np.ndarray) -> tuple[np.ndarray, LayerReport]:
        """Run one lowered layer on an NCHW integer input; return its output and report."""
        program = layer.program
        dram = program.dram_image()
        program.write(dram, "x", layer.pack_input(x))
        stats = self.sim.run(program, dram).to_dict()
        y = layer.unpack_output(program.read(dram, "y"))
        report = LayerReport("", "", "accel", macs=layer.macs, bytes_moved=_bytes_moved(stats))
        if "cycles" in stats:
            report.cycles = stats["cycles"]
            peak = program.config.macs_per_cycle
            report.utilization = layer.macs / (stats["cycles"] * peak) if stats["cycles"] else 0.0
        return y, report


def _bytes_moved(stats: dict) -> int:
    """DRAM bytes of a run, from either simulator's statistics."""
    if "bytes_loaded" in stats:
        return sum(stats["bytes_loaded"].values()) + sum(stats["bytes_stored"].values())
    return stats.get("dram_bytes_read", 0) + stats.get("dram_bytes_written", 0)


def run_model(
    model: CompiledModel, inputs: dict[str, np.ndarray], backend: str | Backend = "functional"
) -> tuple[dict[str, np.ndarray], RunReport]:
    """One inference: the graph outputs and the per-node report."""
    runner = backend if isinstance(backend, Backend) else Backend(backend, model)
    report = RunReport(runner.name)

    def execute(node: Node, args: list) -> list[np.ndarray] | None:
        layer = model.layers.get(node.name)
        if layer is None:
            report.layers.append(LayerReport(node.name, node.op.value, "host"))
            return None
        y, layer_report = runner.run_layer(layer, args[0])
        layer_report.node, layer_report.op = node.name, node.op.value
        report.layers.append(layer_report)
        return [y]

    outputs = run_integer(model.graph, inputs, model.config.acc_bits, override=execute)
    return outputs, report
