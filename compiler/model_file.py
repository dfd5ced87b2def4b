"""The compiled-model file (`.loom`, format `loom-model`): graph, constants and layer programs.

A zip archive: ``model.json`` (format name and version, config, the quantized graph with every
array attribute replaced by a reference, and per accelerated layer its geometry and schedule),
``arrays.npz`` (constants, quantization parameters and array attributes, loaded without pickle)
and ``programs/<layer>.loom`` (each layer's Program file). A layer entry names its kind: "conv"
(`compiler.lower.LoweredConv`: geometry and schedule) or "eltwise"
(`compiler.lower_eltwise.LoweredEltwise`: op and tensor shapes); version 1 files, which predate
the kinds, hold convolutions only. A damaged or foreign file raises one `CompileError` line.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import zipfile
import zlib
from pathlib import Path

import numpy as np

from compiler.ir import CompileError, Graph, Node, Op, QuantParams, Value
from compiler.lower import LoweredConv
from compiler.lower_eltwise import LoweredEltwise
from compiler.schedule import ConvSchedule, ConvShape
from isa.config import HwConfig
from isa.errors import LoomError
from isa.program import Program

FORMAT_NAME = "loom-model"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)


@dataclasses.dataclass
class CompiledModel:
    """A quantized graph for one HwConfig with its accelerated layers lowered to Programs."""

    config: HwConfig
    graph: Graph
    layers: dict[str, LoweredConv | LoweredEltwise]
    prequantized: bool = False  # the source model carried its own quantization (QDQ/QOperator)

    def save(self, path: str | Path) -> None:
        """Write the model file."""
        arrays: dict[str, np.ndarray] = {}
        document = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "config": self.config.to_dict(),
            "graph": _encode_graph(self.graph, arrays),
            "layers": {name: _encode_layer(layer) for name, layer in self.layers.items()},
            "prequantized": self.prequantized,
        }
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("model.json", json.dumps(document))
            zf.writestr("arrays.npz", buffer.getvalue())
            for name, layer in self.layers.items():
                program = io.BytesIO()
                layer.program.save(program)
                zf.writestr(f"programs/{name}.loom", program.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> CompiledModel:
        """Read a model file; anything wrong with it is one CompileError line."""
        try:
            with zipfile.ZipFile(path) as zf:
                if "model.json" not in zf.namelist():
                    raise CompileError("not a compiled Loom model (it has no model.json)")
                document = json.loads(zf.read("model.json"))
                if document.get("format") != FORMAT_NAME:
                    raise CompileError("not a compiled Loom model (format is not loom-model)")
                if document.get("version") not in READABLE_VERSIONS:
                    raise CompileError(
                        f"model file version {document.get('version')} is not supported "
                        f"(this Loom reads {READABLE_VERSIONS[0]} to {FORMAT_VERSION}): "
                        "recompile the model"
                    )
                with np.load(io.BytesIO(zf.read("arrays.npz")), allow_pickle=False) as npz:
                    arrays = {key: npz[key] for key in npz.files}
                config = HwConfig.from_dict(document["config"], "model config")
                graph = _decode_graph(document["graph"], arrays)
                layers = {
                    name: _decode_layer(entry, Program.load(io.BytesIO(
                        zf.read(f"programs/{name}.loom"))))
                    for name, entry in document["layers"].items()
                }
        except FileNotFoundError:
            raise CompileError(f"{path}: no such file") from None
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            raise CompileError(f"{path}: not a readable model file (corrupt or truncated: {exc})")\
                from None
        except (KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
            raise CompileError(f"{path}: model file is missing or has a malformed entry ({exc})")\
                from None
        except LoomError as exc:
            raise CompileError(f"{path}: {exc}") from None
        return cls(config, graph, layers, document["prequantized"])


def _encode(value, key: str, arrays: dict):
    """JSON form of an attribute, with arrays moved into `arrays` and bytes as base64."""
    if isinstance(value, np.ndarray):
        arrays[key] = value
        return {"__array__": key}
    if isinstance(value, bytes):
        return {"__bytes__": base64.b64encode(value).decode()}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple | list):
        return [_encode(v, f"{key}.{i}", arrays) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _encode(v, f"{key}.{k}", arrays) for k, v in value.items()}
    return value


def _decode(value, arrays: dict):
    """Inverse of `_encode` (lists stay lists)."""
    if isinstance(value, dict):
        if "__array__" in value:
            return arrays[value["__array__"]]
        if "__bytes__" in value:
            return base64.b64decode(value["__bytes__"])
        return {k: _decode(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, arrays) for v in value]
    return value


def _encode_graph(graph: Graph, arrays: dict) -> dict:
    values = []
    for v in graph.values.values():
        quant = None if v.quant is None else dataclasses.asdict(v.quant)
        values.append({
            "name": v.name, "shape": list(v.shape), "dtype": v.dtype,
            "const": _encode(v.const, f"const/{v.name}", arrays) if v.const is not None else None,
            "quant": _encode(quant, f"quant/{v.name}", arrays),
        })
    nodes = [
        {"name": n.name, "op": n.op.value, "inputs": n.inputs, "outputs": n.outputs,
         "attrs": _encode(n.attrs, f"attr/{n.name}", arrays), "target": n.target}
        for n in graph.nodes
    ]
    return {"name": graph.name, "inputs": graph.inputs, "outputs": graph.outputs,
            "values": values, "nodes": nodes}


def _decode_graph(doc: dict, arrays: dict) -> Graph:
    values = {}
    for v in doc["values"]:
        quant = _decode(v["quant"], arrays)
        values[v["name"]] = Value(
            v["name"], tuple(v["shape"]), v["dtype"],
            None if v["const"] is None else _decode(v["const"], arrays),
            None if quant is None else QuantParams(**quant),
        )
    nodes = [
        Node(n["name"], Op(n["op"]), n["inputs"], n["outputs"], _decode(n["attrs"], arrays),
             n["target"])
        for n in doc["nodes"]
    ]
    graph = Graph(values, nodes, doc["inputs"], doc["outputs"], doc["name"])
    graph.verify()
    return graph


def _encode_layer(layer: LoweredConv | LoweredEltwise) -> dict:
    if isinstance(layer, LoweredEltwise):
        return {"kind": "eltwise", "op": layer.op, "macs": layer.macs,
                "input_shapes": [list(s) for s in layer.input_shapes],
                "output_shape": list(layer.output_shape)}
    return {
        "kind": "conv",
        "shape": dataclasses.asdict(layer.shape),
        "schedule": layer.schedule.to_dict(),
        "batch": layer.batch,
        "in_channels": layer.in_channels,
        "out_channels": layer.out_channels,
        "macs": layer.macs,
    }


def _decode_layer(entry: dict, program: Program) -> LoweredConv | LoweredEltwise:
    kind = entry.get("kind", "conv")
    if kind == "eltwise":
        return LoweredEltwise(program, entry["op"], [tuple(s) for s in entry["input_shapes"]],
                              tuple(entry["output_shape"]), entry["macs"])
    if kind != "conv":
        raise ValueError(f"unknown layer kind {kind!r}")
    shape = {k: tuple(v) if isinstance(v, list) else v for k, v in entry["shape"].items()}
    return LoweredConv(
        program, ConvShape(**shape), ConvSchedule(**entry["schedule"]), entry["batch"],
        entry["in_channels"], entry["out_channels"], entry["macs"],
    )
