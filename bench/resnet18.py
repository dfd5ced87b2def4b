"""Benchmark: ResNet-18 (random weights, 1x3x224x224) compiled for `default` and run end to end.

Prints one JSON object: compile seconds, functional-simulator seconds, and (with --rtl, the
default) total accelerator cycles on the Verilator model with the Zynq-7020-like DRAM preset,
per-layer cycles and utilization, the 3x3 conv layers after the first, and the layers VTA
offloaded (every conv but the first). Residual adds, the max pool and the global average pool (a
depthwise conv) run on the accelerator too: their cycles are reported apart (`add_cycles`,
`maxpool_cycles`, `global_pool_cycles`); `conv_cycles` counts the convolutions and the final
Gemm only, the figure that compares with VTA's, and `total_cycles` everything the accelerator
ran. Host ops are listed by name.
"""

import argparse
import json
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from compiler.ir import Op
from compiler.lower import shares_blocks
from compiler.pipeline import compile_model
from compiler.runtime import run_batches
from isa.config import load_config


class ResNetBuilder:
    """Builds ResNet-18's ONNX graph with seeded random weights (He initialisation)."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits, self.count = [], [], 0

    def _name(self, kind: str) -> str:
        self.count += 1
        return f"{kind}{self.count}"

    def _const(self, array: np.ndarray) -> str:
        name = self._name("w")
        self.inits.append(numpy_helper.from_array(array.astype(np.float32), name))
        return name

    def conv_bn(self, x: str, cin: int, cout: int, k: int, stride: int, relu: bool) -> str:
        w = self.rng.normal(0, np.sqrt(2 / (cin * k * k)), size=(cout, cin, k, k))
        conv = self._name("conv")
        self.nodes.append(helper.make_node(
            "Conv", [x, self._const(w)], [conv], kernel_shape=[k, k], strides=[stride] * 2,
            pads=[k // 2] * 4, name=conv))
        bn = self._name("bn")
        gamma, beta = self.rng.uniform(0.5, 1.0, cout), self.rng.normal(0, 0.1, cout)
        mean, var = self.rng.normal(0, 0.1, cout), self.rng.uniform(0.5, 1.5, cout)
        self.nodes.append(helper.make_node(
            "BatchNormalization", [conv, *map(self._const, (gamma, beta, mean, var))], [bn],
            name=bn))
        if not relu:
            return bn
        out = self._name("relu")
        self.nodes.append(helper.make_node("Relu", [bn], [out], name=out))
        return out

    def block(self, x: str, cin: int, cout: int, stride: int) -> str:
        y = self.conv_bn(x, cin, cout, 3, stride, True)
        y = self.conv_bn(y, cout, cout, 3, 1, False)
        skip = x if stride == 1 and cin == cout else self.conv_bn(x, cin, cout, 1, stride, False)
        add, out = self._name("add"), self._name("relu")
        self.nodes += [helper.make_node("Add", [y, skip], [add], name=add),
                       helper.make_node("Relu", [add], [out], name=out)]
        return out

    def model(self) -> onnx.ModelProto:
        x = self.conv_bn("input", 3, 64, 7, 2, True)
        pool = self._name("pool")
        self.nodes.append(helper.make_node("MaxPool", [x], [pool], kernel_shape=[3, 3],
                                           strides=[2, 2], pads=[1, 1, 1, 1], name=pool))
        x, cin = pool, 64
        for cout, stride in ((64, 1), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1),
                             (512, 2), (512, 1)):
            x, cin = self.block(x, cin, cout, stride), cout
        self.nodes += [helper.make_node("GlobalAveragePool", [x], ["gap"], name="gap"),
                       helper.make_node("Flatten", ["gap"], ["flat"], name="flat")]
        fc = self.rng.normal(0, np.sqrt(1 / 512), size=(1000, 512))
        self.nodes.append(helper.make_node(
            "Gemm", ["flat", self._const(fc), self._const(np.zeros(1000))], ["logits"],
            transB=1, name="fc"))
        graph = helper.make_graph(
            self.nodes, "resnet18",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 224, 224])],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1000])],
            self.inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def rtl_summary(compiled, image: np.ndarray) -> dict:
    """Total and per-layer cycles on the Verilator model, and the figures VTA is compared on."""
    _, report = run_batches(compiled, {"input": image}, "rtl")
    every = [layer for layer in report.layers if layer.target == "accel"]
    global_pools = {node.name for node in compiled.graph.nodes
                    if node.op == Op.QCONV and shares_blocks(node.attrs)}
    accel = [layer for layer in every
             if layer.op == Op.QCONV and layer.node not in global_pools]
    adds = [layer for layer in every if layer.op == Op.QADD]
    maxpools = [layer for layer in every if layer.op == Op.QMAXPOOL]
    avgpools = [layer for layer in every if layer.node in global_pools]
    first = accel[0].node
    three_by_three = [
        layer for layer in accel
        if layer.node != first and compiled.layers[layer.node].shape.kernel == (3, 3)
    ]
    offloaded = [layer for layer in accel if layer.node not in (first, "fc")]
    return {
        "dram": "zynq7020",
        "total_cycles": report.cycles,
        "conv_cycles": sum(layer.cycles for layer in accel),
        "add_cycles": sum(layer.cycles for layer in adds),
        "maxpool_cycles": sum(layer.cycles for layer in maxpools),
        "host_ops": [layer.node for layer in report.layers if layer.target == "host"],
        "offloaded_conv_cycles": sum(layer.cycles for layer in offloaded),
        "conv3x3_mean_utilization": round(
            float(np.mean([layer.utilization for layer in three_by_three])), 4),
        "global_pool_cycles": sum(layer.cycles for layer in avgpools),
        "first_layer": {"cycles": accel[0].cycles,
                        "utilization": round(accel[0].utilization, 4)},
        "layers": [{"node": layer.node, "cycles": layer.cycles,
                    "utilization": round(layer.utilization, 4)} for layer in accel],
        "eltwise_layers": [{"node": layer.node, "op": layer.op, "cycles": layer.cycles,
                            "bytes": layer.bytes_moved}
                           for layer in [*maxpools, *avgpools, *adds]],
    }


def main() -> None:
    """Compile and run ResNet-18; print the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="default")
    parser.add_argument("--tuning-log", help="compile with the schedules of a tuning log")
    parser.add_argument("--no-rtl", action="store_true", help="skip the Verilator run")
    parser.add_argument("--export", metavar="PREFIX",
                        help="only write PREFIX.onnx and its input PREFIX.npz (for loom commands)")
    args = parser.parse_args()
    cfg = load_config(args.config)
    model = ResNetBuilder(0).model()
    image = np.random.default_rng(1).random((1, 3, 224, 224), dtype=np.float32)
    if args.export:
        onnx.save(model, f"{args.export}.onnx")
        np.savez(f"{args.export}.npz", input=image)
        return

    started = time.perf_counter()
    compiled = compile_model(model, cfg, calib={"input": image}, tuning_log=args.tuning_log)
    compile_seconds = time.perf_counter() - started
    started = time.perf_counter()
    run_batches(compiled, {"input": image}, "functional")
    functional_seconds = time.perf_counter() - started
    result = {
        "config": cfg.name, "compile_seconds": round(compile_seconds, 2),
        "functional_seconds": round(functional_seconds, 2),
        "accelerated_layers": len(compiled.layers),
    }
    if not args.no_rtl:
        result |= rtl_summary(compiled, image)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
