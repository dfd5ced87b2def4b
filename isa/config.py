"""HwConfig: the one description of an accelerator that hardware, ISA, compiler and simulators read.

Every derived quantity (element sizes, index widths, instruction field layouts, peak MACs) is
computed here, once, from the fields of the frozen dataclass. A config that is invalid, or whose
indices do not fit the fixed instruction and micro-op widths, raises `ConfigError` naming the
field and what would fix it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path

from isa import formats
from isa.errors import ConfigError

ELEMENT_BITS = (1, 2, 4, 8)
ACC_BITS_RANGE = (16, 32)
AXI_DATA_BITS = (32, 64, 128, 256, 512)
MAX_BUFFER_DEPTH = 1 << 16
MAX_QUEUE_DEPTH = 4096


def _is_pow2(value: int) -> bool:
    return value >= 1 and value & (value - 1) == 0


@dataclass(frozen=True)
class HwConfig:
    """Shape, widths, buffer depths and interfaces of one accelerator instance."""

    batch: int = 1
    block_in: int = 16
    block_out: int = 16
    inp_bits: int = 8
    wgt_bits: int = 8
    acc_bits: int = 32
    out_bits: int = 8
    uop_depth: int = 8192
    inp_depth: int = 2048
    wgt_depth: int = 1024
    acc_depth: int = 2048
    axi_data_bits: int = 64
    insn_queue_depth: int = 512
    dep_queue_depth: int = 8
    #: GEMM multipliers whose operands are both at most this wide are built from LUT logic
    #: (partial products and adders) rather than inferred DSP blocks; 0: DSPs always. An
    #: implementation choice: the ISA and every result are the same.
    lut_mult_bits: int = 0

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"{f.name} must be an integer, not {value!r}")
        for name in ("batch", "block_in", "block_out"):
            value = getattr(self, name)
            if not _is_pow2(value) or value > 256:
                raise ConfigError(f"{name} must be a power of two from 1 to 256, not {value}")
        for name in ("inp_bits", "wgt_bits", "out_bits"):
            value = getattr(self, name)
            if value not in ELEMENT_BITS:
                raise ConfigError(f"{name} must be one of 1, 2, 4, 8, not {value}")
        lo, hi = ACC_BITS_RANGE
        if not lo <= self.acc_bits <= hi:
            raise ConfigError(f"acc_bits must be from {lo} to {hi}, not {self.acc_bits}")
        for name in ("uop_depth", "inp_depth", "wgt_depth", "acc_depth"):
            value = getattr(self, name)
            if not _is_pow2(value) or not 2 <= value <= MAX_BUFFER_DEPTH:
                raise ConfigError(
                    f"{name} must be a power of two from 2 to {MAX_BUFFER_DEPTH}, not {value}"
                )
        if self.axi_data_bits not in AXI_DATA_BITS:
            raise ConfigError(
                f"axi_data_bits must be one of {', '.join(map(str, AXI_DATA_BITS))}, "
                f"not {self.axi_data_bits}"
            )
        for name in ("insn_queue_depth", "dep_queue_depth"):
            value = getattr(self, name)
            if not _is_pow2(value) or not 2 <= value <= MAX_QUEUE_DEPTH:
                raise ConfigError(
                    f"{name} must be a power of two from 2 to {MAX_QUEUE_DEPTH}, not {value}"
                )
        if not 0 <= self.lut_mult_bits <= max(ELEMENT_BITS):
            raise ConfigError(f"lut_mult_bits must be from 0 (DSP multipliers) to "
                              f"{max(ELEMENT_BITS)}, not {self.lut_mult_bits}")
        for kind in ("inp", "wgt", "acc", "out"):
            bits = self.elem_bits(kind)
            if bits % 8:
                raise ConfigError(
                    f"{kind.upper()} element of {bits} bits is not a whole number of bytes: "
                    f"raise batch/block sizes or {kind}_bits so it is a multiple of 8"
                )
        bus_bytes = self.axi_data_bits // 8
        for kind in ("uop", "inp", "wgt", "acc", "out"):
            size = self.elem_bytes(kind)
            if size % bus_bytes and bus_bytes % size:
                raise ConfigError(
                    f"a {kind.upper()} element of {size} bytes neither divides nor is a multiple "
                    f"of the {bus_bytes}-byte AXI bus: change axi_data_bits or the element size"
                )
        formats.check_fits(self.insn_formats, self.uop_format)

    # -- element geometry -------------------------------------------------------------------

    def elem_shape(self, kind: str) -> tuple[int, ...]:
        """Shape of one SRAM/DRAM element of a memory kind: inp, wgt, acc, out or uop."""
        return {
            "inp": (self.batch, self.block_in),
            "wgt": (self.block_out, self.block_in),
            "acc": (self.batch, self.block_out),
            "out": (self.batch, self.block_out),
            "uop": (),
        }[kind]

    def lane_bits(self, kind: str) -> int:
        """Bits of one scalar lane of a memory kind (the uop is a single 32-bit lane)."""
        return {
            "inp": self.inp_bits,
            "wgt": self.wgt_bits,
            "acc": self.acc_bits,
            "out": self.out_bits,
            "uop": formats.UOP_BITS,
        }[kind]

    def elem_bits(self, kind: str) -> int:
        """Bits of one element of a memory kind, packed densely."""
        lanes = 1
        for n in self.elem_shape(kind):
            lanes *= n
        return lanes * self.lane_bits(kind)

    def elem_bytes(self, kind: str) -> int:
        """Bytes of one element of a memory kind (element addresses in DRAM count these)."""
        return self.elem_bits(kind) // 8

    def depth(self, kind: str) -> int:
        """Number of elements in the on-chip buffer of a memory kind (OUT shares ACC's)."""
        return {
            "uop": self.uop_depth,
            "inp": self.inp_depth,
            "wgt": self.wgt_depth,
            "acc": self.acc_depth,
            "out": self.acc_depth,
        }[kind]

    def index_bits(self, kind: str) -> int:
        """Bits of an index into the buffer of a memory kind."""
        return self.depth(kind).bit_length() - 1

    # -- derived performance and naming -------------------------------------------------------

    @property
    def macs_per_cycle(self) -> int:
        """Peak multiply-accumulates per cycle of the GEMM core."""
        return self.batch * self.block_in * self.block_out

    def buffer_bytes(self, kind: str) -> int:
        """On-chip bytes of the buffer of a memory kind."""
        return self.depth(kind) * self.elem_bytes(kind)

    @property
    def sram_bytes(self) -> int:
        """Total on-chip buffer bytes (uop, inp, wgt, acc and out)."""
        return sum(self.buffer_bytes(k) for k in ("uop", "inp", "wgt", "acc", "out"))

    @cached_property
    def insn_formats(self) -> dict[formats.Opcode, formats.Format]:
        """Field layout of every instruction format for this config."""
        return formats.instruction_formats(self._index_widths())

    @cached_property
    def uop_format(self) -> formats.Format:
        """Field layout of a micro-op for this config."""
        return formats.uop_format(self._index_widths())

    def _index_widths(self) -> formats.IndexWidths:
        return formats.IndexWidths(
            uop=self.index_bits("uop"),
            inp=self.index_bits("inp"),
            wgt=self.index_bits("wgt"),
            acc=self.index_bits("acc"),
        )

    def to_dict(self) -> dict[str, int]:
        """Canonical form: every field by name, but lut_mult_bits only when set (so the IDs of
        configs from before it existed stay)."""
        fields = dataclasses.asdict(self)
        if not self.lut_mult_bits:
            del fields["lut_mult_bits"]
        return fields

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> HwConfig:
        """Build a config from a mapping, rejecting unknown keys by name."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"{source}: unknown field {', '.join(unknown)}; known fields: "
                f"{', '.join(sorted(known))}"
            )
        return cls(**data)

    @cached_property
    def config_id(self) -> int:
        """Stable 32-bit ID: a hash of the canonical form (the hardware's ID register)."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return int.from_bytes(hashlib.sha256(canonical.encode()).digest()[:4], "big")

    @property
    def config_id_hex(self) -> str:
        """The config ID as 8 hex digits."""
        return f"{self.config_id:08x}"

    @property
    def name(self) -> str:
        """Human-readable name, e.g. 1x16x16_i8w8a32o8_u8192i2048w1024a2048_bus64."""
        return (
            f"{self.batch}x{self.block_in}x{self.block_out}"
            f"_i{self.inp_bits}w{self.wgt_bits}a{self.acc_bits}o{self.out_bits}"
            f"_u{self.uop_depth}i{self.inp_depth}w{self.wgt_depth}a{self.acc_depth}"
            f"_bus{self.axi_data_bits}_q{self.insn_queue_depth}d{self.dep_queue_depth}"
            + (f"_lut{self.lut_mult_bits}" if self.lut_mult_bits else "")
        )

    @property
    def lut_multipliers(self) -> bool:
        """True when the GEMM core's multipliers are LUT logic (see `lut_mult_bits`)."""
        return max(self.inp_bits, self.wgt_bits) <= self.lut_mult_bits

    def describe(self) -> dict:
        """Fields plus the derived quantities, for `loom config` and manifests."""
        kinds = ("uop", "inp", "wgt", "acc", "out")
        return {
            "name": self.name,
            "config_id": self.config_id_hex,
            "fields": self.to_dict(),
            "macs_per_cycle": self.macs_per_cycle,
            "elem_bits": {k: self.elem_bits(k) for k in kinds},
            "index_bits": {k: self.index_bits(k) for k in kinds},
            "buffer_bytes": {k: self.buffer_bytes(k) for k in kinds},
            "sram_bytes": self.sram_bytes,
            "formats": {
                op.name: fmt.describe()
                for op, fmt in self.insn_formats.items()
            }
            | {"UOP": self.uop_format.describe()},
        }


def preset_names() -> list[str]:
    """Names of the bundled presets."""
    folder = resources.files("isa") / "presets"
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.suffix == ".toml")


def load_config(name_or_path: str | Path) -> HwConfig:
    """Load a config from a bundled preset name or a TOML/JSON file path."""
    text, source = _read_config_text(str(name_or_path))
    try:
        data = json.loads(text) if source.endswith(".json") else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{source}: not valid {'JSON' if source.endswith('.json') else 'TOML'}: "
                          f"{exc}") from None
    try:
        return HwConfig.from_dict(data, source)
    except ConfigError as exc:
        message = str(exc)
        raise ConfigError(message if message.startswith(source) else f"{source}: {message}") \
            from None
    except TypeError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _read_config_text(name_or_path: str) -> tuple[str, str]:
    preset = resources.files("isa") / "presets" / f"{name_or_path}.toml"
    if "/" not in name_or_path and preset.is_file():
        return preset.read_text(), f"preset {name_or_path}"
    path = Path(name_or_path)
    if path.is_file():
        try:
            return path.read_text(), str(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read the config file ({exc})") from None
    raise ConfigError(
        f"no config named {name_or_path!r}: give a preset ({', '.join(preset_names())}) "
        f"or the path of a .toml/.json file"
    )
