"""Residual adds (QADD) and max pooling (QMAXPOOL) on the accelerator: bit-exact against the
integer reference, on square and non-square cores, through the whole compiler and the RTL."""

import json
import zipfile

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from int_graphs import one_op
from onnx_models import Builder, random_inputs

from compiler.ir import Graph, Op
from compiler.lower import LoweredConv
from compiler.lower_eltwise import LoweredEltwise, add_levels, balanced_digits, lower_eltwise
from compiler.model_file import CompiledModel
from compiler.pipeline import compile_model, lower_graph, partition_graph
from compiler.qreference import run_integer
from compiler.reference import pool_geometry
from compiler.runtime import run_batches, run_model
from isa import load_config

PRESETS = ["small", "nonsquare"]


def compiled_one_op(cfg, graph: Graph) -> CompiledModel:
    graph = partition_graph(graph, cfg)
    return CompiledModel(cfg, graph, lower_graph(graph, cfg, {}))


def run_and_check(cfg, graph: Graph, inputs: dict) -> tuple[np.ndarray, object]:
    """Run a one-op graph on the accelerator; it must equal the integer reference."""
    model = compiled_one_op(cfg, graph)
    (node,) = model.graph.nodes
    assert node.target == "accel", node.attrs.get("host_reason")
    outputs, report = run_model(model, inputs)
    want = run_integer(graph, inputs, cfg.acc_bits)["y"]
    np.testing.assert_array_equal(outputs["y"], want)
    return outputs["y"], report


@given(st.integers(-(1 << 40), 1 << 40), st.sampled_from([2, 4, 8]))
def test_balanced_digits_rebuild_the_value(value, bits):
    digits = balanced_digits(value, bits)
    assert all(-(1 << (bits - 1)) <= d < 1 << (bits - 1) for d in digits)
    assert sum(d << (bits * k) for k, d in enumerate(digits)) == value


@given(st.lists(st.integers(-32767, 32767), min_size=1, max_size=3),
       st.integers(-(1 << 30), 1 << 30), st.sampled_from([2, 4, 8]))
def test_horner_levels_compute_the_weighted_sum(multipliers, offset, bits):
    levels = add_levels(multipliers, offset, bits)
    xs = np.arange(-3, 3)
    acc = 0
    for level in levels:
        acc = (acc << bits) + level.offset + sum(d * xs for d in level.digits)
    np.testing.assert_array_equal(acc, offset + sum(m * xs for m in multipliers))
    assert all(-(1 << (bits - 1)) <= d < 1 << (bits - 1) for lv in levels for d in lv.digits)
    assert -(1 << 15) <= levels[0].offset < 1 << 15


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("count, shape, multipliers, offset, clip", [
    (2, (1, 7, 5, 6), [23456, -19000], 0, (0, 127)),           # residual add + ReLU
    (2, (3, 13, 4, 3), [32767, 301], -3000001, (-128, 127)),  # a wide offset: more levels
    (3, (2, 9, 6, 5), [1200, -32000, 7], 99, (-20, 100)),
    (1, (1, 5, 9, 9), [15000], 1 << 20, (0, 127)),             # a requantization
    (2, (4, 11), [20000, 20000], 0, (-128, 127)),              # rank 2 (after a Gemm)
])
def test_qadd_on_the_accelerator_is_bit_exact(preset, count, shape, multipliers, offset, clip):
    cfg = load_config(preset)
    rng = np.random.default_rng(count + len(shape))
    xs = [rng.integers(-128, 128, shape).astype(np.int8) for _ in range(count)]
    attrs = {"multipliers": np.array(multipliers), "shift": 16, "offset": offset, "clip": clip}
    y, report = run_and_check(cfg, one_op(Op.QADD, attrs, xs, shape), {f"x{i}": x for i, x in
                                                                      enumerate(xs)})
    assert len(np.unique(y)) > 10  # not saturated: the test can fail
    (layer,) = report.layers
    assert layer.target == "accel" and layer.macs == 0 and layer.utilization is None
    assert layer.bytes_moved >= (count + 1) * y.size


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("kernel", [2, 3])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("pad", [0, 1])
def test_qmaxpool_on_the_accelerator_is_bit_exact(preset, kernel, stride, pad):
    cfg = load_config(preset)
    rng = np.random.default_rng(kernel * 10 + stride * 3 + pad)
    x = rng.integers(-128, 128, (3, 13, 9, 8)).astype(np.int8)
    x[0, 0] = -128  # padding next to the lowest value must not win over it either
    attrs = {"kernel_shape": (kernel, kernel), "strides": (stride, stride), "pads": (pad,) * 4,
             "dilations": (1, 1), "ceil_mode": 0}
    (oh, ow), _ = pool_geometry(attrs, x.shape[2:])
    run_and_check(cfg, one_op(Op.QMAXPOOL, attrs, [x], (3, 13, oh, ow)), {"x0": x})


@pytest.mark.parametrize("attrs", [
    {"kernel_shape": (3, 2), "strides": (2, 1), "pads": (1, 0, 2, 1), "ceil_mode": 0},
    {"kernel_shape": (3, 3), "strides": (2, 2), "pads": (0, 0, 0, 0), "ceil_mode": 1},
    {"kernel_shape": (1, 1), "strides": (2, 2), "pads": (0, 0, 0, 0), "ceil_mode": 0},
    {"kernel_shape": (5, 5), "strides": (3, 3), "pads": (2, 2, 2, 2), "ceil_mode": 1},
])
def test_qmaxpool_asymmetric_pads_and_ceil_mode(attrs):
    cfg = load_config("small")
    x = np.random.default_rng(7).integers(-128, 128, (1, 6, 10, 11)).astype(np.int8)
    attrs = attrs | {"dilations": (1, 1)}
    (oh, ow), _ = pool_geometry(attrs, x.shape[2:])
    run_and_check(cfg, one_op(Op.QMAXPOOL, attrs, [x], (1, 6, oh, ow)), {"x0": x})


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("shapes", [
    [(2, 6, 4, 5), (1, 6, 1, 1)],      # a per-channel term
    [(3, 4, 5), (5,)],                 # ONNX's test_add_bcast
    [(19,), (19,)],                    # a vector: channels
    [(3001,), (1,)],                   # a long vector: many channel blocks per tile
    [(2, 3, 2, 3, 4), (2, 3, 2, 3, 4)],  # rank 5: trailing dimensions folded
])
def test_qadd_broadcasts_and_takes_any_rank(preset, shapes):
    cfg = load_config(preset)
    rng = np.random.default_rng(len(shapes[1]))
    xs = [rng.integers(-128, 128, s).astype(np.int8) for s in shapes]
    attrs = {"multipliers": np.array([14000, -9000]), "shift": 14, "offset": 5, "clip": (-128, 127)}
    graph = one_op(Op.QADD, attrs, xs, np.broadcast_shapes(*shapes))
    run_and_check(cfg, graph, {"x0": xs[0], "x1": xs[1]})


def test_a_large_plane_is_tiled_over_both_buffer_halves():
    cfg = load_config("small")  # 128-element buffer halves: 35x33 planes need many tiles
    rng = np.random.default_rng(3)
    xs = [rng.integers(-128, 128, (1, 6, 35, 33)).astype(np.int8) for _ in range(2)]
    attrs = {"multipliers": np.array([9000, 17000]), "shift": 15, "offset": 0, "clip": (0, 127)}
    run_and_check(cfg, one_op(Op.QADD, attrs, xs, xs[0].shape), {"x0": xs[0], "x1": xs[1]})
    pool = {"kernel_shape": (3, 3), "strides": (2, 2), "pads": (1,) * 4, "dilations": (1, 1),
            "ceil_mode": 0}
    run_and_check(cfg, one_op(Op.QMAXPOOL, pool, [xs[0]], (1, 6, 18, 17)), {"x0": xs[0]})


@pytest.mark.parametrize("op, attrs, shapes, reason", [
    (Op.QADD, {"multipliers": np.array([1, 1]), "shift": 0, "offset": 0, "clip": (-200, 200)},
     [(1, 4, 3, 3), (1, 4, 3, 3)], "exceeds 8-bit outputs"),
    (Op.QMAXPOOL, {"kernel_shape": (2, 2), "strides": (1, 1), "pads": (0,) * 4,
                   "dilations": (2, 2), "ceil_mode": 0}, [(1, 4, 5, 5)], "dilation"),
])
def test_what_cannot_run_stays_on_the_host_with_its_reason(op, attrs, shapes, reason):
    cfg = load_config("small")
    rng = np.random.default_rng(0)
    xs = [rng.integers(-128, 128, s).astype(np.int8) for s in shapes]
    graph = partition_graph(one_op(op, attrs, xs, (1, 4, 3, 3)), cfg)
    (node,) = graph.nodes
    assert node.target == "host" and reason in node.attrs["host_reason"]
    model = CompiledModel(cfg, graph, lower_graph(graph, cfg, {}))
    _, report = run_model(model, {f"x{i}": x for i, x in enumerate(xs)})
    assert report.layers[0].target == "host" and reason in report.layers[0].reason


def residual_model(batch: int = 1):
    """Conv, MaxPool 3x3/2, a residual block whose Add (+ ReLU) mixes two scales, MaxPool 2x2."""
    b = Builder("x", (batch, 3, 12, 11), seed=5)
    x = b.op("Relu", [b.conv(b.input, 7, kernel=3, pad=1)])
    x = b.pool("MaxPool", x, kernel=3, stride=2, pad=1)
    y = b.op("Relu", [b.conv(x, 7, kernel=3, pad=1)])
    y = b.conv(y, 7, kernel=3, pad=1)
    x = b.op("Relu", [b.op("Add", [y, b.conv(x, 7, kernel=1)])])
    x = b.pool("MaxPool", x, kernel=2, stride=2)
    return b.model([b.gemm(b.op("Flatten", [x]), 5)])


@pytest.mark.parametrize("preset", PRESETS)
def test_residual_model_runs_adds_and_pools_on_the_accelerator(preset, tmp_path):
    cfg = load_config(preset)
    model = residual_model(2)
    inputs = random_inputs(model, seed=1)
    compiled = compile_model(model, cfg, calib=inputs, batch=2, verify=True)
    accel = {n.op for n in compiled.graph.nodes if n.target == "accel"}
    assert accel == {Op.QCONV, Op.QADD, Op.QMAXPOOL}
    (add,) = [n for n in compiled.graph.nodes if n.op == Op.QADD]
    assert len(set(np.asarray(add.attrs["multipliers"]).tolist())) == 2  # different scales
    assert add.attrs["clip"][0] == 0  # the ReLU
    outputs, report = run_batches(compiled, inputs)
    want = run_integer(compiled.graph, inputs, cfg.acc_bits)
    for name in compiled.graph.outputs:
        np.testing.assert_array_equal(outputs[name], want[name])
    eltwise = [layer for layer in report.layers if layer.op in (Op.QADD, Op.QMAXPOOL)]
    assert len(eltwise) == 3 and all(layer.target == "accel" for layer in eltwise)
    compiled.save(tmp_path / "m.loom")
    loaded = CompiledModel.load(tmp_path / "m.loom")
    assert isinstance(loaded.layers[add.name], LoweredEltwise)
    again, _ = run_batches(loaded, inputs)
    for name in compiled.graph.outputs:
        np.testing.assert_array_equal(again[name], outputs[name])


def test_identity_needs_two_bit_weights():
    cfg = load_config("small")
    cfg = type(cfg)(**(cfg.to_dict() | {"wgt_bits": 1}))
    x = np.zeros((1, 4, 3, 3), dtype=np.int8)
    attrs = {"kernel_shape": (2, 2), "strides": (1, 1), "pads": (0,) * 4, "dilations": (1, 1),
             "ceil_mode": 0}
    graph = one_op(Op.QMAXPOOL, attrs, [x], (1, 4, 2, 2))
    with pytest.raises(Exception, match="cannot hold the identity"):
        lower_eltwise(cfg, graph, graph.nodes[0])


@pytest.mark.slow
def test_residual_model_on_the_rtl_equals_the_functional_simulator():
    cfg = load_config("small")
    model = residual_model(1)
    inputs = random_inputs(model, seed=2)
    compiled = compile_model(model, cfg, calib=inputs)
    functional, _ = run_batches(compiled, inputs, "functional")
    rtl, report = run_batches(compiled, inputs, "rtl")
    for name in compiled.graph.outputs:
        np.testing.assert_array_equal(rtl[name], functional[name])
    eltwise = [layer for layer in report.layers if layer.op in (Op.QADD, Op.QMAXPOOL)]
    assert len(eltwise) == 3 and all(layer.cycles > 0 for layer in eltwise)
    by_op = report.cycles_by_op()
    assert sum(by_op.values()) == report.cycles and by_op[Op.QADD] > 0


def test_version_1_model_files_still_load(tmp_path):
    """Files written before layer kinds (convolutions only) load as convolutions."""
    cfg = load_config("small")
    b = Builder("x", (1, 3, 6, 6), seed=4)
    model = b.model([b.op("Relu", [b.conv(b.input, 5, kernel=3, pad=1)])])
    inputs = random_inputs(model)
    compiled = compile_model(model, cfg, calib=inputs)
    compiled.save(tmp_path / "v2.loom")
    with zipfile.ZipFile(tmp_path / "v2.loom") as src, \
            zipfile.ZipFile(tmp_path / "v1.loom", "w") as dst:
        for item in src.namelist():
            data = src.read(item)
            if item == "model.json":
                document = json.loads(data)
                document["version"] = 1
                for entry in document["layers"].values():
                    del entry["kind"]
                data = json.dumps(document)
            dst.writestr(item, data)
    loaded = CompiledModel.load(tmp_path / "v1.loom")
    assert all(isinstance(layer, LoweredConv) for layer in loaded.layers.values())
    got, _ = run_batches(loaded, inputs)
    want, _ = run_batches(compiled, inputs)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])
