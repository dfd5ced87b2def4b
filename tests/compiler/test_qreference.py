"""The integer reference against definitions written with Python integers, and the accelerator."""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from int_graphs import one_op, quant
from onnx_models import CNN_MODELS, random_inputs

from compiler.frontend import import_onnx
from compiler.ir import Graph, Node, Op, Value
from compiler.lower import lower_conv
from compiler.pipeline import FRONT_PASSES
from compiler.qreference import run_integer
from compiler.quantize import calibrate, quantize_graph
from isa import load_config
from sim.functional import FunctionalSim

SETTINGS = settings(derandomize=True, max_examples=40, deadline=None)


def wrap(v: int, bits: int) -> int:
    """Two's-complement wrap of a Python integer."""
    half = 1 << (bits - 1)
    return (v + half) % (1 << bits) - half


def rshr(v: int, n: int) -> int:
    """The ALU's rounding shift (half up) for the shifts the quantizer emits (0 <= n)."""
    return v if n == 0 else (v + (1 << (n - 1))) >> n


def window_cells(h: int, w: int, kernel, strides, pads, oy: int, ox: int):
    """The (row, column, in_bounds) cells of an output's window, in padded coordinates."""
    for ky, kx in itertools.product(range(kernel[0]), range(kernel[1])):
        r = oy * strides[0] + ky - pads[0]
        c = ox * strides[1] + kx - pads[1]
        yield r, c, 0 <= r < h and 0 <= c < w


def out_size(h: int, w: int, kernel, strides, pads) -> tuple[int, int]:
    """Output rows and columns of a window op."""
    return ((h + pads[0] + pads[2] - kernel[0]) // strides[0] + 1,
            (w + pads[1] + pads[3] - kernel[1]) // strides[1] + 1)


@st.composite
def windows(draw, max_kernel: int = 3):
    """Input shape, kernel, strides and pads of a small window op."""
    kernel = (draw(st.integers(1, max_kernel)), draw(st.integers(1, max_kernel)))
    strides = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pads = tuple(draw(st.integers(0, k - 1)) for k in (*kernel, *kernel))
    h = draw(st.integers(max(1, kernel[0] - pads[0] - pads[2]), 6))
    w = draw(st.integers(max(1, kernel[1] - pads[1] - pads[3]), 6))
    return (draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w), kernel, strides, pads


@SETTINGS
@given(windows(), st.sampled_from([16, 24, 32]), st.integers(0, 2**32 - 1), st.booleans())
def test_qconv_matches_its_definition(geometry, acc_bits, seed, relu):
    """QCONV = clip(wrap(rshr(rshr(wrap(bias + sum x*w), pre) * m[c], post))): the product is
    exact, only the sums and the result wrap (MULR); large operands make both wrap."""
    (n, c, h, w), kernel, strides, pads = geometry
    rng = np.random.default_rng(seed)
    c_out = int(rng.integers(1, 4))
    x = rng.integers(-128, 128, size=(n, c, h, w))
    attrs = {
        "weights": rng.integers(-128, 128, size=(c_out, c, *kernel)),
        "bias": rng.integers(-(1 << 20), 1 << 20, size=c_out), "strides": strides, "pads": pads,
        "pre_shift": int(rng.integers(0, 5)), "multiplier": rng.integers(-(1 << 15) + 1, 1 << 15,
                                                                           size=c_out),
        # Products exceed acc_bits (exact in MULR); a post_shift near that keeps results
        # unclipped, and some wrap.
        "post_shift": int(rng.integers(acc_bits - 10, acc_bits - 6)),
        "clip": (0, 127) if relu else (-128, 127),
    }
    oh, ow = out_size(h, w, kernel, strides, pads)
    got = run_integer(one_op(Op.QCONV, attrs, [x], (n, c_out, oh, ow)), {"x0": x}, acc_bits)["y"]
    lo, hi = attrs["clip"]
    for b, o, oy, ox in itertools.product(range(n), range(c_out), range(oh), range(ow)):
        acc = int(attrs["bias"][o])
        for r, col, inside in window_cells(h, w, kernel, strides, pads, oy, ox):
            ky, kx = r + pads[0] - oy * strides[0], col + pads[1] - ox * strides[1]
            if inside:
                acc += sum(int(x[b, i, r, col]) * int(attrs["weights"][o, i, ky, kx])
                           for i in range(c))
        v = rshr(wrap(acc, acc_bits), attrs["pre_shift"])
        v = wrap(rshr(v * int(attrs["multiplier"][o]), attrs["post_shift"]), acc_bits)
        assert got[b, o, oy, ox] == min(max(v, lo), hi)


@SETTINGS
@given(st.integers(1, 3), st.integers(0, 2**32 - 1))
def test_qadd_matches_its_definition(count, seed):
    """QADD = clip(rshr(offset + sum m_i * x_i, shift)), broadcasting like the ALU's lanes."""
    rng = np.random.default_rng(seed)
    xs = [rng.integers(-128, 128, size=(2, 3, 4, 4)) for _ in range(count)]
    attrs = {"multipliers": rng.integers(-(1 << 15) + 1, 1 << 15, size=count),
             "shift": int(rng.integers(0, 20)), "offset": int(rng.integers(-(1 << 22), 1 << 22)),
             "clip": (int(rng.integers(-128, 0)), int(rng.integers(0, 128)))}
    inputs = {f"x{i}": x for i, x in enumerate(xs)}
    got = run_integer(one_op(Op.QADD, attrs, xs, xs[0].shape), inputs)["y"]
    for index in np.ndindex(xs[0].shape):
        acc = attrs["offset"] + sum(int(m) * int(x[index])
                                    for m, x in zip(attrs["multipliers"], xs, strict=True))
        assert got[index] == min(max(rshr(acc, attrs["shift"]), attrs["clip"][0]),
                                 attrs["clip"][1])


@SETTINGS
@given(windows(), st.booleans(), st.integers(0, 2**32 - 1))
def test_qavgpool_matches_its_definition(geometry, include_pad, seed):
    """QAVGPOOL = clip(round_half_even(sum(x - zx) * m / (count * 2**shift)) + zy), pads
    counted only with count_include_pad."""
    (n, c, h, w), kernel, strides, pads = geometry
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, size=(n, c, h, w))
    attrs = {"kernel_shape": kernel, "strides": strides, "pads": pads,
             "count_include_pad": int(include_pad), "input_zero_point": int(rng.integers(-128, 0)),
             "multiplier": int(rng.integers(1, 1 << 15)), "shift": int(rng.integers(12, 16)),
             "output_zero_point": int(rng.integers(-20, 20)), "clip": (-128, 127)}
    # Multipliers of a power of two make exact ties, where half-to-even matters.
    attrs["multiplier"] = 1 << attrs["shift"] if seed % 2 else attrs["multiplier"]
    oh, ow = out_size(h, w, kernel, strides, pads)
    got = run_integer(one_op(Op.QAVGPOOL, attrs, [x], (n, c, oh, ow)), {"x0": x})["y"]
    for b, ch, oy, ox in itertools.product(range(n), range(c), range(oh), range(ow)):
        cells = list(window_cells(h, w, kernel, strides, pads, oy, ox))
        total = sum(int(x[b, ch, r, col]) - attrs["input_zero_point"]
                    for r, col, inside in cells if inside)
        count = len(cells) if include_pad else sum(inside for _, _, inside in cells)
        value = round(Fraction(total * attrs["multiplier"], count << attrs["shift"]))
        assert got[b, ch, oy, ox] == min(max(value + attrs["output_zero_point"], -128), 127)


@SETTINGS
@given(windows())
def test_qmaxpool_is_the_maximum_of_the_window(geometry):
    """QMAXPOOL takes the largest in-bounds integer of each window (pads never win)."""
    (n, c, h, w), kernel, strides, pads = geometry
    x = np.random.default_rng(h * w).integers(-128, 128, size=(n, c, h, w))
    attrs = {"kernel_shape": kernel, "strides": strides, "pads": pads, "dilations": (1, 1),
             "ceil_mode": 0}
    oh, ow = out_size(h, w, kernel, strides, pads)
    got = run_integer(one_op(Op.QMAXPOOL, attrs, [x], (n, c, oh, ow)), {"x0": x})["y"]
    for b, ch, oy, ox in itertools.product(range(n), range(c), range(oh), range(ow)):
        cells = window_cells(h, w, kernel, strides, pads, oy, ox)
        assert got[b, ch, oy, ox] == max(x[b, ch, r, col] for r, col, inside in cells if inside)


def test_quantize_saturates_to_the_lane_width():
    """A QUANTIZE into 4-bit lanes rounds half to even and saturates to [-8, 7], not int8's."""
    values = {
        "x": Value("x", (6,), "float32"),
        "s": Value("s", (), "float32", const=np.float32(0.5)),
        "z": Value("z", (), "int8", const=np.int8(1)),
        "q": Value("q", (6,), "int8", quant=quant(bits=4, scale=0.5, zero=1)),
    }
    node = Node("quantize", Op.QUANTIZE, ["x", "s", "z"], ["q"], {"axis": 0, "dtype": "int8"})
    graph = Graph(values, [node], ["x"], ["q"])
    x = np.array([-100.0, -4.75, 0.25, 0.75, 2.9, 100.0], np.float32)
    assert run_integer(graph, {"x": x})["q"].tolist() == [-8, -8, 1, 3, 7, 7]


def test_override_replaces_what_a_node_computes():
    """override(node, args) may supply a node's outputs, which later nodes then read."""
    x = np.arange(-4, 4).reshape(1, 2, 2, 2)
    attrs = {"multipliers": np.array([1]), "shift": 0, "offset": 0, "clip": (-128, 127)}
    graph = one_op(Op.QADD, attrs, [x], x.shape)
    graph.values["z"] = Value("z", x.shape, "int8", quant=quant())
    graph.nodes.append(Node("again", Op.QADD, ["y"], ["z"], attrs))
    graph.outputs = ["z"]
    seen = []

    def override(node, args):
        seen.append(node.name)
        return [np.full(x.shape, 7, np.int8)] if node.name == "op" else None

    assert (run_integer(graph, {"x0": x}, override=override)["z"] == 7).all()
    assert seen == ["op", "again"]


@pytest.mark.parametrize("name", ["residual", "padded", "grouped", "depthwise"])
def test_qconv_is_what_the_accelerator_computes(name):
    """Every QCONV of a quantized CNN, lowered and run on the functional simulator of the small
    config, gives the integer reference's output bit for bit."""
    cfg = load_config("small")
    model = CNN_MODELS[name](1)
    graph = import_onnx(model)
    for step in FRONT_PASSES:
        graph = step(graph)
    ranges = calibrate(graph, [random_inputs(model, seed=s) for s in range(4)])
    q = quantize_graph(graph, ranges, cfg)
    env = run_integer(q, random_inputs(model, seed=9), cfg.acc_bits, keep=True)
    convs = [node for node in q.nodes if node.op == Op.QCONV]
    assert len(convs) >= 4
    for node in convs:
        x = env[node.inputs[0]].astype(np.int64)
        lowered = lower_conv(cfg, x.shape, node.attrs, name=node.name)
        program = lowered.program
        dram = program.dram_image()
        program.write(dram, "x", lowered.pack_input(x))
        FunctionalSim(cfg).run(program, dram)
        y = lowered.unpack_output(program.read(dram, "y"))
        np.testing.assert_array_equal(y, env[node.outputs[0]], err_msg=node.name)
