"""Small integer graphs for tests: one quantized op reading integer graph inputs."""

import numpy as np

from compiler.ir import Graph, Node, Op, QuantParams, Value


def quant(bits: int = 8, scale: float = 0.1, zero: int = 0) -> QuantParams:
    """Per-tensor QuantParams."""
    return QuantParams(np.asarray(scale, np.float32), np.asarray(zero), bits)


def one_op(op: Op, attrs: dict, inputs: list[np.ndarray], out_shape) -> Graph:
    """A graph of one integer op reading integer graph inputs x0, x1, ..."""
    names = [f"x{i}" for i in range(len(inputs))]
    values = {n: Value(n, a.shape, "int8", quant=quant())
              for n, a in zip(names, inputs, strict=True)}
    values["y"] = Value("y", tuple(out_shape), "int8", quant=quant())
    return Graph(values, [Node("op", op, names, ["y"], attrs)], names, ["y"])
