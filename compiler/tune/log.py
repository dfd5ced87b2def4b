"""The tuning log: JSON lines, one record per measurement, appendable and reused across runs.

A record names the layer by its *key* (`layer_key`: geometry and epilogue, not the node's name),
so a record made while tuning one network applies to every layer of the same shape in another
(a grouped convolution's key names its groups).
It also carries the config ID, the schedule, the measured cycles (None when the candidate failed
or ran past its cycle limit; `error` says which), the Verilator model (its cache key: config,
Verilog, harness and tool) and DRAM model it was measured on, and the tool versions.

The epilogue signature has one letter per requantization ALU instruction after the bias MOV
(`compiler.lower.epilogue_steps`): p RSHR by the pre-shift, r MULR by the multiplier rows (always
there, so the rows are always loaded), c CLIP, l MAX and h MIN (bounds that do not fit a byte).
Keys of logs written before MULR also parse, with their own letters (v per-channel MUL, m uniform
MUL, q RSHR by the post-shift, '-' none) counting their own instructions.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from compiler.ir import CompileError
from compiler.lower import epilogue_steps
from compiler.schedule import ConvSchedule, ConvShape, block_inputs
from isa.config import HwConfig
from isa.formats import AluOp

TOOLS = ("loom", "amaranth", "verilator")


def layer_key(cfg: HwConfig, input_shape, attrs: dict) -> str:
    """A readable key of a QCONV layer: what its cycles depend on besides the schedule."""
    n, c, h, w = input_shape
    c_out, _, kh, kw = np.shape(attrs["weights"])
    sh, sw = attrs["strides"]
    pads = ",".join(str(p) for p in attrs["pads"])
    groups = attrs.get("groups", 1)
    grouped = f"g{groups} " if groups > 1 else ""
    return (f"conv n{n} c{c} {h}x{w} o{c_out} k{kh}x{kw} s{sh}x{sw} p{pads} {grouped}"
            f"e{epilogue_signature(cfg, attrs)}")


_KEY = re.compile(
    r"conv n(?P<n>\d+) c(?P<c>\d+) (?P<h>\d+)x(?P<w>\d+) o(?P<o>\d+) k(?P<kh>\d+)x(?P<kw>\d+) "
    r"s(?P<sh>\d+)x(?P<sw>\d+) p(?P<pads>\d+,\d+,\d+,\d+) (?:g(?P<g>\d+) )?"
    r"e(?P<e>[prclhvmq]+|-)$"
)


@dataclass(frozen=True)
class LayerKey:
    """A layer key read back: what a cost model needs of a layer it has not seen as a graph."""

    input_shape: tuple[int, int, int, int]
    out_channels: int
    kernel: tuple[int, int]
    strides: tuple[int, int]
    pads: tuple[int, int, int, int]
    epilogue: str
    groups: int = 1

    @property
    def epilogue_ops(self) -> int:
        """Requantization ALU instructions per tile after the bias MOV (an old key's '-' is one
        ADD)."""
        return max(1, len(self.epilogue.strip("-")))

    @property
    def per_channel(self) -> bool:
        """True when the multipliers are ACC rows (loaded with the bias)."""
        return "r" in self.epilogue or "v" in self.epilogue

    def conv_shape(self, cfg: HwConfig) -> ConvShape:
        """The layer's geometry in the accelerator units of `cfg`."""
        n, c, h, w = self.input_shape
        return ConvShape(-(-n // cfg.batch), -(-c // cfg.block_in),
                         -(-self.out_channels // cfg.block_out), h, w, self.kernel,
                         self.strides, self.pads,
                         block_inputs(c, self.out_channels, self.groups, cfg.block_in,
                                      cfg.block_out))


def parse_layer_key(key: str) -> LayerKey:
    """The fields of a `layer_key`; a malformed key raises CompileError."""
    m = _KEY.match(key)
    if m is None:
        raise CompileError(f"not a layer key: {key!r}")
    g = m.groupdict()
    return LayerKey(
        (int(g["n"]), int(g["c"]), int(g["h"]), int(g["w"])), int(g["o"]),
        (int(g["kh"]), int(g["kw"])), (int(g["sh"]), int(g["sw"])),
        tuple(int(p) for p in g["pads"].split(",")), g["e"], int(g["g"] or 1),
    )


def epilogue_signature(cfg: HwConfig, attrs: dict) -> str:
    """Which requantization steps a layer's epilogue runs (they cost ALU cycles)."""
    letters = {AluOp.RSHR: "p", AluOp.MULR: "r", AluOp.CLIP: "c", AluOp.MAX: "l", AluOp.MIN: "h"}
    return "".join(letters[op] for op, _ in epilogue_steps(cfg, attrs))


def tool_versions() -> dict[str, str]:
    """Versions of the packages a measurement depends on."""
    versions = {}
    for name in TOOLS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "none"
    return versions


@dataclass
class TuningRecord:
    """One measurement of one schedule of one layer."""

    layer: str
    config_id: str
    schedule: dict
    cycles: int | None
    error: str | None = None
    hardware: str = ""
    dram: str = ""
    seconds: float = 0.0
    tools: dict = field(default_factory=tool_versions)
    time: float = field(default_factory=time.time)

    @property
    def conv_schedule(self) -> ConvSchedule:
        """The schedule as a ConvSchedule."""
        return ConvSchedule(**self.schedule)

    def to_json(self) -> str:
        """One line of the log."""
        return json.dumps(asdict(self), sort_keys=True)


def append_records(path: str | Path, records: list[TuningRecord]) -> None:
    """Append records to a log (created if missing); each line is flushed whole."""
    if not records:
        return
    with open(path, "a") as log:
        log.write("".join(record.to_json() + "\n" for record in records))


def read_records(path: str | Path) -> list[TuningRecord]:
    """Every record of a log; a malformed line is a CompileError naming file and line."""
    records = []
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise CompileError(f"cannot read tuning log {path}: {exc.strerror}") from None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            known = {k: data[k] for k in TuningRecord.__dataclass_fields__ if k in data}
            record = TuningRecord(**known)
            ConvSchedule(**record.schedule)  # its fields must be a schedule's
        except (json.JSONDecodeError, TypeError, KeyError, AttributeError) as exc:
            raise CompileError(f"{path}:{number}: not a tuning record ({exc})") from None
        records.append(record)
    return records


def best_schedules(records: list[TuningRecord], cfg: HwConfig) -> dict[str, ConvSchedule]:
    """The fastest measured schedule per layer key among the records of `cfg`."""
    best: dict[str, tuple[int, ConvSchedule]] = {}
    for record in records:
        if record.config_id != cfg.config_id_hex or record.cycles is None:
            continue
        if record.layer not in best or record.cycles < best[record.layer][0]:
            best[record.layer] = (record.cycles, record.conv_schedule)
    return {key: schedule for key, (_, schedule) in best.items()}
