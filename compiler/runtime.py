"""Runs a compiled model: accelerated layers on a simulator backend, everything else on the host.

The quantized graph executes in order with the integer reference's host kernels; each node that
was lowered to a Program instead packs its inputs into the accelerator's layout (one input
segment each: `LoweredLayer.pack_inputs`), runs the Program on the chosen backend (the functional
simulator, or the cycle-accurate RTL simulation) and unpacks the output. The report lists, per
node, where it ran (with the reason a node the accelerator could run stayed on the host), its
MACs, the bytes the accelerator moved, and (on the RTL backend) cycles and utilization. Layers
without MACs of their own (residual adds, max pooling) report cycles and bytes, no utilization.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np

from compiler.ir import CompileError, Graph, Node
from compiler.model_file import CompiledModel
from compiler.qreference import run_integer
from isa.errors import LoomError
from isa.program import Program

BACKENDS = ("functional", "rtl")


class LoweredLayer(Protocol):
    """What the runtime needs of a lowered node (`compiler.lower.LoweredConv`,
    `compiler.lower_eltwise.LoweredEltwise`): its Program, MACs and tensor packing."""

    program: Program
    macs: int

    def pack_inputs(self, xs: list[np.ndarray]) -> dict[str, np.ndarray]:
        """The node's input arrays as elements, by input segment."""

    def unpack_output(self, elements: np.ndarray) -> np.ndarray:
        """The elements of segment "y" as the node's output array."""


@dataclass
class LayerReport:
    """What one node did: where it ran, work, traffic and (RTL) cycles."""

    node: str
    op: str
    target: str
    macs: int = 0
    bytes_moved: int = 0
    cycles: int | None = None
    peak: int = 0  # MACs per cycle of the GEMM core, for utilization (0: not a MAC layer)
    reason: str | None = None  # why a node the accelerator could run stayed on the host

    @property
    def utilization(self) -> float | None:
        """MACs / (cycles x peak MACs per cycle), when cycles are known."""
        if self.cycles is None or not self.peak:
            return None
        return self.macs / (self.cycles * self.peak) if self.cycles else 0.0

    def to_dict(self) -> dict:
        """JSON-ready form, utilization included."""
        return asdict(self) | {"utilization": self.utilization}


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

    def cycles_by_op(self) -> dict[str, int] | None:
        """Accelerator cycles per op (convolutions apart from adds and pooling), RTL only."""
        if self.cycles is None:
            return None
        totals: dict[str, int] = {}
        for layer in self.layers:
            if layer.target == "accel":
                totals[layer.op] = totals.get(layer.op, 0) + layer.cycles
        return totals

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {"backend": self.backend, "cycles": self.cycles,
                "cycles_by_op": self.cycles_by_op(),
                "layers": [layer.to_dict() for layer in self.layers]}


class Backend:
    """Runs layer Programs on one simulator, reusing it across layers and inferences.

    `dram` names the DRAM model of the RTL backend (`boards.dram`; its default otherwise).
    """

    def __init__(self, name: str, model: CompiledModel, dram: str | None = None):
        if name not in BACKENDS:
            raise LoomError(f"unknown backend {name!r}; backends: {', '.join(BACKENDS)}")
        self.name = name
        if name == "functional":
            from sim.functional import FunctionalSim

            self.sim = FunctionalSim(model.config)
        else:
            from sim.rtl import RtlSim

            self.sim = RtlSim(model.config) if dram is None else RtlSim(model.config, dram)

    def run_layer(self, layer: LoweredLayer, xs: list[np.ndarray]) -> tuple[np.ndarray,
                                                                           LayerReport]:
        """Run one lowered layer on its integer inputs; return its output and report."""
        program = layer.program
        dram = program.dram_image()
        for segment, elements in layer.pack_inputs(xs).items():
            program.write(dram, segment, elements)
        stats = self.sim.run(program, dram).to_dict()
        y = layer.unpack_output(program.read(dram, "y"))
        peak = program.config.macs_per_cycle if layer.macs else 0
        report = LayerReport("", "", "accel", macs=layer.macs, bytes_moved=_bytes_moved(stats),
                             cycles=stats.get("cycles"), peak=peak)
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
            report.layers.append(LayerReport(node.name, node.op.value, "host",
                                             reason=node.attrs.get("host_reason")))
            return None
        y, layer_report = runner.run_layer(layer, args)
        layer_report.node, layer_report.op = node.name, node.op.value
        report.layers.append(layer_report)
        return [y]

    outputs = run_integer(model.graph, inputs, model.config.acc_bits, override=execute)
    return outputs, report


def split_batches(
    graph: Graph, inputs: dict[str, np.ndarray], drop_partial: bool = False,
) -> list[dict[str, np.ndarray]]:
    """Inputs as a list of feeds of the graph's input shapes, split along axis 0.

    Each input stacks the same number of arrays of its compiled shape along axis 0 (a partial
    last one is dropped with `drop_partial`, else an error); inputs of rank 0 or with an empty
    first dimension are given whole and go to every feed.
    """
    arrays = {name: np.asarray(inputs[name]) for name in graph.inputs if name in inputs}
    sizes, counts = {}, {}
    for name in graph.inputs:
        if name not in arrays:
            raise CompileError(f"graph input {name} is missing (got {', '.join(inputs) or 'none'})")
        shape, array = tuple(graph.values[name].shape), arrays[name]
        if not shape or not shape[0]:
            if array.shape != shape:
                raise CompileError(f"input {name} has shape {array.shape}, not {shape}")
            continue
        partial = len(array) % shape[0] and not drop_partial
        if array.ndim != len(shape) or array.shape[1:] != shape[1:] or partial:
            raise CompileError(f"input {name} has shape {array.shape}; it must stack arrays of "
                               f"the compiled shape {shape} along axis 0")
        sizes[name], counts[name] = shape[0], len(array) // shape[0]
    if len(set(counts.values())) > 1:
        raise CompileError(f"inputs hold different numbers of batches: {counts}")
    return [
        {name: array[k * sizes[name]:(k + 1) * sizes[name]] if name in sizes else array
         for name, array in arrays.items()}
        for k in range(next(iter(counts.values()), 1))
    ]


def run_batches(
    model: CompiledModel, inputs: dict[str, np.ndarray], backend: str = "functional",
    dram: str | None = None,
) -> tuple[dict[str, np.ndarray], RunReport]:
    """Inference over any number of samples, in chunks of the batch the model was compiled for.

    The report sums each node's MACs, bytes and cycles over the chunks.
    """
    runner = Backend(backend, model, dram)
    chunks, total = [], None
    for feeds in split_batches(model.graph, inputs):
        outputs, report = run_model(model, feeds, runner)
        chunks.append(outputs)
        total = report if total is None else _add_reports(total, report)
    if len(chunks) == 1:  # outputs of any rank, scalars included
        return chunks[0], total
    merged = {name: np.concatenate([c[name] for c in chunks]) for name in model.graph.outputs}
    return merged, total


def _add_reports(total: RunReport, more: RunReport) -> RunReport:
    """Per-node sums of two reports of the same graph."""
    for mine, theirs in zip(total.layers, more.layers, strict=True):
        mine.macs += theirs.macs
        mine.bytes_moved += theirs.bytes_moved
        if mine.cycles is not None and theirs.cycles is not None:
            mine.cycles += theirs.cycles
    return total
