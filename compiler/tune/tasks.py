"""Tuning tasks: the distinct accelerated layers of a model, each with its search space.

Layers with the same key (`compiler.tune.log.layer_key`) share one task: a schedule tuned for
one of them is the schedule of all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from compiler.lower import LoweredConv, conv_shape, lower_conv, shares_blocks
from compiler.pipeline import accelerated_layers, prepare_graph
from compiler.schedule import ConvSchedule, ConvShape, default_schedule
from compiler.tune.log import layer_key
from isa.config import HwConfig


@dataclass
class TuneTask:
    """One layer to tune: its key, the nodes that share it, its input shape and attributes."""

    cfg: HwConfig
    key: str
    input_shape: tuple[int, int, int, int]
    attrs: dict
    nodes: list[str] = field(default_factory=list)

    @property
    def shape(self) -> ConvShape:
        """The layer's geometry in accelerator units."""
        return conv_shape(self.cfg, self.input_shape, self.attrs)

    @property
    def macs(self) -> int:
        """Multiply-accumulates of one run of the layer."""
        c_out, c_in, kh, kw = np.shape(self.attrs["weights"])  # c_in per group
        s = self.shape
        return self.input_shape[0] * c_out * c_in * kh * kw * s.out_height * s.out_width

    def heuristic(self) -> ConvSchedule:
        """The schedule the compiler picks without a tuning record."""
        return default_schedule(self.cfg, self.shape)

    def lower(self, schedule: ConvSchedule) -> LoweredConv:
        """The layer's Program under a schedule."""
        return lower_conv(self.cfg, self.input_shape, self.attrs, schedule, self.nodes[0])


def model_tasks(model, cfg: HwConfig, *, calib=None, batch: int = 1) -> list[TuneTask]:
    """The distinct accelerated layers of an ONNX model (path or ModelProto), in graph order.

    Average pools (`compiler.lower.shares_blocks`) are left out: their weight loads are not
    what the analytic counters model, and they take few cycles.
    """
    graph, _ = prepare_graph(model, cfg, calib=calib, batch=batch)
    tasks: dict[str, TuneTask] = {}
    for node, shape in accelerated_layers(graph):
        if shares_blocks(node.attrs):
            continue
        key = layer_key(cfg, shape, node.attrs)
        task = tasks.setdefault(key, TuneTask(cfg, key, shape, node.attrs))
        task.nodes.append(node.name)
    return list(tasks.values())


def conv_task(
    cfg: HwConfig, input_shape, out_channels: int, kernel: int, stride: int = 1,
    pad: int | None = None, seed: int = 0, groups: int = 1,
) -> TuneTask:
    """A task for a synthetic conv layer (random int weights, per-channel requantization, ReLU;
    `groups` groups)."""
    rng = np.random.default_rng(seed)
    in_channels = input_shape[1]
    pad = kernel // 2 if pad is None else pad
    attrs = {
        "weights": rng.integers(-8, 8, (out_channels, in_channels // groups, kernel, kernel)),
        "bias": rng.integers(-64, 64, out_channels),
        "strides": (stride, stride),
        "pads": (pad,) * 4,
        "pre_shift": 2,
        "multiplier": rng.integers(1 << 12, 1 << 14, out_channels),
        "post_shift": 18,
        "clip": (0, (1 << (cfg.out_bits - 1)) - 1),
        "groups": groups,
    }
    shape = tuple(input_shape)
    key = layer_key(cfg, shape, attrs)
    grouped = f"_g{groups}" if groups > 1 else ""
    return TuneTask(cfg, key, shape, attrs,
                    [f"conv{kernel}x{kernel}_{in_channels}_{out_channels}{grouped}"])
