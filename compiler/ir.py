"""Loom's graph IR: one node type, one op enum, named values with shapes, types and quantization.

A `Graph` holds `Value`s (tensors: graph inputs, constants, intermediates) and `Node`s in
topological order. Every pass is a function `verb_noun(graph) -> graph` that returns a new or
updated graph and keeps it valid (`Graph.verify`). Activations are NCHW like ONNX; layout packing
for the accelerator happens at lowering, not here.

Quantized values carry `QuantParams`: real = scale * (q - zero_point), with `bits`-wide signed
integers (Loom quantizes symmetrically, zero_point 0; imported QDQ models may carry others).
The fused accelerator op is `Op.QCONV` (Conv or Gemm with bias, requantization and activation
clip); its attributes are documented at `QCONV_ATTRS`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from enum import StrEnum

import networkx as nx
import numpy as np

from isa.errors import LoomError


class CompileError(LoomError):
    """A model Loom cannot compile: the message names the node, the op and what would work."""


class Op(StrEnum):
    """Operations of the IR (ONNX names where one exists)."""

    CONV = "Conv"
    GEMM = "Gemm"
    MATMUL = "MatMul"
    RELU = "Relu"
    CLIP = "Clip"
    ADD = "Add"
    MAXPOOL = "MaxPool"
    AVERAGEPOOL = "AveragePool"
    GLOBALAVERAGEPOOL = "GlobalAveragePool"
    BATCHNORM = "BatchNormalization"
    RESHAPE = "Reshape"
    FLATTEN = "Flatten"
    TRANSPOSE = "Transpose"
    SOFTMAX = "Softmax"
    QUANTIZE = "QuantizeLinear"
    DEQUANTIZE = "DequantizeLinear"
    QCONV = "LoomQConv"
    QADD = "LoomQAdd"
    QMAXPOOL = "LoomQMaxPool"
    QAVGPOOL = "LoomQAvgPool"
    IM2COL = "LoomIm2Col"
    HOST = "LoomHost"


# Attributes of a QCONV node (inputs: [x]; the weights, bias and requantization are attributes
# so that lowering needs nothing else):
#   weights   int array (C_out, C_in / groups, KH, KW), signed `wgt_bits`
#   bias      int64 array (C_out,), added to the accumulator (scale = x.scale * w.scale[c])
#   strides   (sh, sw);  pads (top, left, bottom, right)
#   groups    int (absent: 1), as ONNX's Conv group: output channel c reads the input channels
#             of group c // (C_out / groups); the dense equivalent's weights are block-diagonal
#   pre_shift int >= 0, multiplier int array (C_out,) |m| < 2**15,
#   post_shift int in [0, acc_bits + 15]
#   clip      (lo, hi) on the requantized value (e.g. (0, 127) after a ReLU)
# y[c] = clip(rshr(rshr(acc[c], pre_shift) * multiplier[c], post_shift), lo, hi), where rshr is
# the ALU's rounding shift (isa.semantics), the product is exact, the value before the clip
# wraps to acc_bits (the ALU's MULR) and acc[c] = bias[c] + sum x * w, exactly as the
# accelerator computes it.
# An IM2COL node (attrs kernel (KH, KW), strides, pads as for Conv) lays every input window out
# as channels: y[n, (c*KH + i)*KW + j, oh, ow] = x_padded[n, c, oh*sh + i, ow*sw + j], so a
# convolution becomes a 1x1 convolution over C*KH*KW channels with the same weights flattened.
QCONV_ATTRS = (
    "weights", "bias", "strides", "pads", "pre_shift", "multiplier", "post_shift", "clip",
    "groups",
)


@dataclass
class QuantParams:
    """Affine quantization of a value: real = scale * (q - zero_point), per tensor or channel."""

    scale: np.ndarray
    zero_point: np.ndarray
    bits: int = 8
    axis: int | None = None

    @property
    def per_channel(self) -> bool:
        """True when scale varies along `axis`."""
        return np.ndim(self.scale) > 0 and np.size(self.scale) > 1


@dataclass
class Value:
    """A tensor: name, shape, element type, optional constant data and quantization."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    const: np.ndarray | None = None
    quant: QuantParams | None = None


@dataclass
class Node:
    """One operation: op, input and output value names, attributes, and where it runs."""

    name: str
    op: Op
    inputs: list[str]
    outputs: list[str]
    attrs: dict = field(default_factory=dict)
    target: str = "host"  # "host" or "accel", decided by partitioning


@dataclass
class Graph:
    """Values and topologically ordered nodes, with named graph inputs and outputs."""

    values: dict[str, Value]
    nodes: list[Node]
    inputs: list[str]
    outputs: list[str]
    name: str = "model"

    def copy(self) -> Graph:
        """A deep copy (constants included) that passes may rewrite freely."""
        return copy.deepcopy(self)

    def producer(self, value: str) -> Node | None:
        """The node that writes a value (None for inputs and constants)."""
        for node in self.nodes:
            if value in node.outputs:
                return node
        return None

    def consumers(self, value: str) -> list[Node]:
        """The nodes that read a value."""
        return [node for node in self.nodes if value in node.inputs]

    def to_networkx(self) -> nx.DiGraph:
        """The dataflow as a networkx graph of node names (edges labelled with values)."""
        graph = nx.DiGraph()
        graph.add_nodes_from(node.name for node in self.nodes)
        writers = {out: node.name for node in self.nodes for out in node.outputs}
        for node in self.nodes:
            for value in node.inputs:
                if value in writers:
                    graph.add_edge(writers[value], node.name, value=value)
        return graph

    def sort(self) -> None:
        """Reorder nodes topologically (stable for already ordered graphs)."""
        order = list(nx.lexicographical_topological_sort(
            self.to_networkx(), key=[n.name for n in self.nodes].index
        ))
        by_name = {node.name: node for node in self.nodes}
        self.nodes = [by_name[name] for name in order]

    def verify(self) -> None:
        """Raise CompileError when a value is undefined, written twice, or used before written."""
        defined = set(self.inputs) | {n for n, v in self.values.items() if v.const is not None}
        names = set()
        for node in self.nodes:
            if node.name in names:
                raise CompileError(f"node name {node.name} is used twice")
            names.add(node.name)
            for value in node.inputs:
                if value and value not in defined:
                    raise CompileError(
                        f"node {node.name} ({node.op}) reads {value} before it is written"
                    )
            for value in node.outputs:
                if value in defined:
                    raise CompileError(f"value {value} is written twice (by {node.name})")
                if value not in self.values:
                    raise CompileError(f"node {node.name} writes {value}, which has no Value")
                defined.add(value)
        for value in self.outputs:
            if value not in defined:
                raise CompileError(f"graph output {value} is never written")
