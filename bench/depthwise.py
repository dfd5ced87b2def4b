"""Benchmark: a MobileNet-style depthwise-separable block on `default`, and its dense twin.

The block is a 3x3 depthwise convolution of 32 channels at 56x56 (BN, ReLU) and a 1x1
pointwise convolution 32 -> 64 (BN, ReLU), random weights, compiled with the heuristic
schedules. Prints one JSON object: per accelerated layer its GEMM uops and DRAM bytes (functional
simulator), cycles and utilization (MACs / (cycles x peak); a depthwise layer uses one diagonal
of each weight block, so its ceiling is 1 / block_out) on the Verilator model with the
Zynq-7020-like DRAM preset (unless --no-rtl), and the same figures of the depthwise layer
lowered as a dense convolution (its block-diagonal weights as a groups = 1 QCONV: all 2 x 2
weight blocks), which is what the compiler did before grouped convolutions were lowered sparsely.
"""

import argparse
import json

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from compiler.lower import lower_conv
from compiler.pipeline import compile_model
from compiler.runtime import Backend, run_batches
from isa.config import load_config
from sim.functional import FunctionalSim


def block_model(channels: int = 32, size: int = 56, out_channels: int = 64):
    """Depthwise 3x3 + BN + ReLU, pointwise 1x1 + BN + ReLU, seeded random weights."""
    rng = np.random.default_rng(0)
    inits, nodes = [], []

    def const(name, array):
        inits.append(numpy_helper.from_array(np.asarray(array, dtype=np.float32), name))
        return name

    def conv_bn_relu(x, name, w, group):
        c = w.shape[0]
        nodes.append(helper.make_node("Conv", [x, const(f"{name}_w", w)], [f"{name}_c"],
                                      kernel_shape=list(w.shape[2:]),
                                      pads=[w.shape[2] // 2] * 4, group=group, name=name))
        stats = [rng.uniform(0.5, 1.0, c), rng.normal(0, 0.1, c), rng.normal(0, 0.1, c),
                 rng.uniform(0.5, 1.5, c)]
        nodes.append(helper.make_node(
            "BatchNormalization", [f"{name}_c", *(const(f"{name}_{k}", v) for k, v in
                                                  zip("gbmv", stats, strict=True))],
            [f"{name}_bn"], name=f"{name}_bn"))
        nodes.append(helper.make_node("Relu", [f"{name}_bn"], [f"{name}_y"], name=f"{name}_relu"))
        return f"{name}_y"

    x = conv_bn_relu("input", "depthwise",
                     rng.normal(0, np.sqrt(2 / 9), (channels, 1, 3, 3)), channels)
    y = conv_bn_relu(x, "pointwise",
                     rng.normal(0, np.sqrt(2 / channels), (out_channels, channels, 1, 1)), 1)
    graph = helper.make_graph(
        nodes, "dw_block",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, channels, size, size])],
        [helper.make_tensor_value_info(y, TensorProto.FLOAT, [1, out_channels, size, size])],
        inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def main() -> None:
    """Compile and run the block; print the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="default")
    parser.add_argument("--no-rtl", action="store_true", help="skip the Verilator run")
    args = parser.parse_args()
    cfg = load_config(args.config)
    model = block_model()
    image = np.random.default_rng(1).random((1, 32, 56, 56), dtype=np.float32)
    compiled = compile_model(model, cfg, calib={"input": image})
    layers = {}
    for name, layer in compiled.layers.items():
        program = layer.program
        dram = program.dram_image()
        stats = FunctionalSim(cfg).run(program, dram)
        s = layer.shape
        layers[name] = {
            "schedule": layer.schedule.to_dict(), "macs": layer.macs,
            "gemm_uops": stats.gemm_uops,
            "dense_gemm_uops": s.batch_blocks * s.out_height * s.out_width * s.cin_blocks
            * s.cout_blocks * s.kernel[0] * s.kernel[1],
            "dram_bytes": sum(stats.bytes_loaded.values()) + sum(stats.bytes_stored.values()),
        }
    node = next(n for n in compiled.graph.nodes if n.name == "depthwise")
    x_shape = compiled.graph.values[node.inputs[0]].shape
    dense = lower_conv(cfg, x_shape, node.attrs | {
        "weights": block_diagonal(node.attrs["weights"]), "groups": 1}, name="dense")
    stats = FunctionalSim(cfg).run(dense.program, dense.program.dram_image())
    layers["depthwise_as_dense"] = {"schedule": dense.schedule.to_dict(),
                                    "macs": layers["depthwise"]["macs"],
                                    "gemm_uops": stats.gemm_uops}
    result = {"config": cfg.name, "layers": layers}
    if not args.no_rtl:
        _, report = run_batches(compiled, {"input": image}, "rtl")
        for layer in report.layers:
            if layer.target == "accel":
                layers[layer.node] |= {"cycles": layer.cycles,
                                       "utilization": round(layer.utilization, 4)}
        result |= {"dram": "zynq7020", "total_cycles": report.cycles}
        x = np.random.default_rng(2).integers(0, 128, x_shape)
        _, rtl = Backend("rtl", compiled).run_layer(dense, x)
        layers["depthwise_as_dense"]["cycles"] = rtl.cycles
        layers["depthwise_as_dense"]["utilization"] = round(
            layers["depthwise"]["macs"] / (rtl.cycles * cfg.macs_per_cycle), 4)
    print(json.dumps(result))


def block_diagonal(weights: np.ndarray) -> np.ndarray:
    """Depthwise weights (C, 1, KH, KW) as the dense (C, C, KH, KW) matrix they stand for."""
    c = weights.shape[0]
    dense = np.zeros((c, c, *weights.shape[2:]), dtype=weights.dtype)
    dense[np.arange(c), np.arange(c)] = weights[:, 0]
    return dense


if __name__ == "__main__":
    main()
