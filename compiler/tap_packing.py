"""Packing kernel taps into the GEMM core's reduction blocks for layers with few input channels.

A convolution with C_in input channels uses ceil(C_in / block_in) * KH * KW reduction blocks
per output pixel; with C_in = 3 and block_in = 16 that wastes 13/16 of the core (ResNet's first
layer). `pack_taps` rewrites such a QCONV into an IM2COL on the host followed by a 1x1 QCONV
over C_in * KH * KW channels, which needs only ceil(C_in * KH * KW / block_in) blocks. The sums,
and so the results, are exactly the same.
"""

from __future__ import annotations

import math

import numpy as np

from compiler.ir import Graph, Node, Op, Value
from compiler.passes import fresh_name
from isa.config import HwConfig

MIN_GAIN = 2  # pack only when it at least halves the reduction blocks


def reduction_blocks(c_in: int, kernel: tuple[int, int], block_in: int, packed: bool) -> int:
    """Reduction blocks per output pixel, direct or with the taps packed into channels."""
    taps = kernel[0] * kernel[1]
    if packed:
        return math.ceil(c_in * taps / block_in)
    return math.ceil(c_in / block_in) * taps


def pack_taps(graph: Graph, cfg: HwConfig) -> Graph:
    """Replace each QCONV that wastes reduction blocks by IM2COL + a 1x1 QCONV (same results)."""
    graph = graph.copy()
    nodes = []
    for node in graph.nodes:
        if node.op == Op.QCONV and _worth_packing(node, cfg):
            nodes += _packed(graph, node)
        else:
            nodes.append(node)
    graph.nodes = nodes
    return graph


def _worth_packing(node: Node, cfg: HwConfig) -> bool:
    _, c_in, kh, kw = np.shape(node.attrs["weights"])
    if (kh, kw) == (1, 1) or node.attrs.get("groups", 1) > 1:
        # A grouped conv already skips its zero weight blocks: packing gains nothing.
        return False
    direct = reduction_blocks(c_in, (kh, kw), cfg.block_in, packed=False)
    packed = reduction_blocks(c_in, (kh, kw), cfg.block_in, packed=True)
    return packed * MIN_GAIN <= direct


def _packed(graph: Graph, node: Node) -> list[Node]:
    """IM2COL of the QCONV's input, and the QCONV rewritten as 1x1 over the columns."""
    x = graph.values[node.inputs[0]]
    weights = np.asarray(node.attrs["weights"])
    c_out, c_in, kh, kw = weights.shape
    out = graph.values[node.outputs[0]]
    n, _, oh, ow = out.shape
    columns = fresh_name(graph, f"{node.inputs[0]}_columns")
    graph.values[columns] = Value(columns, (n, c_in * kh * kw, oh, ow), x.dtype, quant=x.quant)
    im2col = Node(fresh_name(graph, f"{node.name}_im2col"), Op.IM2COL, [node.inputs[0]],
                  [columns], {"kernel": (kh, kw), "strides": tuple(node.attrs["strides"]),
                              "pads": tuple(node.attrs["pads"])})
    attrs = node.attrs | {
        "weights": weights.reshape(c_out, c_in * kh * kw, 1, 1),
        "strides": (1, 1),
        "pads": (0, 0, 0, 0),
    }
    return [im2col, Node(node.name, node.op, [columns, *node.inputs[1:]], node.outputs, attrs,
                         node.target)]
