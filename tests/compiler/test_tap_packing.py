"""Tap packing: IM2COL + 1x1 QCONV computes exactly what the original QCONV did."""

import numpy as np
import pytest

from compiler.ir import Graph, Node, Op, QuantParams, Value
from compiler.lower import lower_conv
from compiler.qreference import run_integer
from compiler.tap_packing import pack_taps, reduction_blocks
from isa import load_config
from sim.functional import FunctionalSim


def qconv_graph(rng, c_in, c_out, kernel, stride, pad, shape):
    quant = QuantParams(np.float32(0.1), np.int8(0))
    n, h, w = shape
    oh, ow = (h + 2 * pad - kernel) // stride + 1, (w + 2 * pad - kernel) // stride + 1
    attrs = {
        "weights": rng.integers(-128, 128, size=(c_out, c_in, kernel, kernel)),
        "bias": rng.integers(-500, 500, size=c_out), "strides": (stride, stride),
        "pads": (pad, pad, pad, pad), "pre_shift": 2,
        "multiplier": rng.integers(1, 1 << 12, size=c_out), "post_shift": 12, "clip": (0, 127),
    }
    values = {
        "x": Value("x", (n, c_in, h, w), "int8", quant=quant),
        "y": Value("y", (n, c_out, oh, ow), "int8", quant=quant),
    }
    return Graph(values, [Node("conv", Op.QCONV, ["x"], ["y"], attrs)], ["x"], ["y"])


@pytest.mark.parametrize(
    ("c_in", "kernel", "stride", "pad"), [(3, 7, 2, 3), (1, 3, 1, 1), (2, 5, 1, 2), (3, 3, 2, 0)]
)
def test_packed_graph_is_bit_exact(c_in, kernel, stride, pad):
    rng = np.random.default_rng(c_in * 100 + kernel)
    cfg = load_config("default")  # block_in 16: few input channels waste most of a block
    graph = qconv_graph(rng, c_in, 6, kernel, stride, pad, (2, 11, 9))
    packed = pack_taps(graph, cfg)
    assert [n.op for n in packed.nodes] == [Op.IM2COL, Op.QCONV]
    packed.verify()
    x = rng.integers(-128, 128, size=(2, c_in, 11, 9)).astype(np.int8)
    expected = run_integer(graph, {"x": x})["y"]
    np.testing.assert_array_equal(run_integer(packed, {"x": x})["y"], expected)

    # and on the accelerator, as the runtime would run it
    im2col, conv = packed.nodes
    columns = run_integer(packed, {"x": x}, keep=True)[im2col.outputs[0]]
    lowered = lower_conv(cfg, columns.shape, conv.attrs)
    dram = lowered.program.dram_image()
    lowered.program.write(dram, "x", lowered.pack_input(columns))
    FunctionalSim(cfg).run(lowered.program, dram)
    np.testing.assert_array_equal(lowered.unpack_output(lowered.program.read(dram, "y")),
                                  expected)


def test_only_layers_that_waste_blocks_are_packed():
    rng = np.random.default_rng(0)
    cfg = load_config("small")  # block_in 4
    assert reduction_blocks(3, (7, 7), 16, packed=False) == 49
    assert reduction_blocks(3, (7, 7), 16, packed=True) == 10
    # direct vs packed blocks: 18 vs 18, 9 vs 9, 9 vs 5 (less than 2x), 9 vs 3, 1x1
    for c_in, kernel, packs in [(8, 3, False), (4, 3, False), (2, 3, False), (1, 3, True),
                                (3, 1, False)]:
        graph = qconv_graph(rng, c_in, 4, kernel, 1, kernel // 2, (1, 6, 6))
        ops = [n.op for n in pack_taps(graph, cfg).nodes]
        assert (Op.IM2COL in ops) == packs, (c_in, kernel)
