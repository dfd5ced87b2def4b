"""Program: what runs on the accelerator, and its `.loom` file format.

A Program holds the HwConfig it was built for, the instruction stream, named uop kernels and named
DRAM segments (inputs, outputs, weights, scratch) with their element kind, count and optional
initial data, plus room for a host graph. Its DRAM layout is fixed at construction: the uop
kernels first (segment ``uops``), then the segments in order, then the instructions, each aligned
to `ALIGN` bytes and to its element size. Instruction `dram_base` fields count elements of their
memory kind from DRAM offset 0 of that layout.

The `.loom` file is a zip archive: ``manifest.json`` (format name and version, config, layout,
kernel table, host graph), ``insns.bin`` (encoded instructions) and ``data/<segment>.bin`` for
every segment with initial data. Zip CRCs catch corruption; a wrong format, version or config ID
is refused with a message saying what to do.
"""

from __future__ import annotations

import json
import math
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from isa.config import HwConfig
from isa.errors import ConfigError, IsaError, LoomError, ProgramError
from isa.formats import Opcode
from isa.instructions import (
    INSN_BYTES,
    Insn,
    Uop,
    check,
    decode_stream,
    decode_uop,
    encode_stream,
    encode_uop,
)
from isa.packing import pack_elements, unpack_elements

FORMAT_NAME = "loom-program"
FORMAT_VERSION = 1
ALIGN = 64
SEGMENT_KINDS = ("input", "output", "weights", "scratch", "uops")
MEM_KINDS = ("inp", "wgt", "acc", "out", "uop")
UOP_SEGMENT = "uops"
NAME_PATTERN = re.compile(r"[A-Za-z_][\w.\-]*")


@dataclass
class Segment:
    """A named DRAM region of `count` elements of memory kind `mem`, with optional initial data."""

    name: str
    kind: str
    mem: str
    count: int
    data: bytes | None = None
    meta: dict = field(default_factory=dict)
    offset: int = 0

    def __post_init__(self):
        if not NAME_PATTERN.fullmatch(self.name):
            raise ProgramError(
                f"segment name {self.name!r} is not a name (letters, digits, _ . -, "
                "not starting with a digit)"
            )
        if self.kind not in SEGMENT_KINDS:
            raise ProgramError(
                f"segment {self.name}: kind {self.kind!r} is not one of {', '.join(SEGMENT_KINDS)}"
            )
        if self.mem not in MEM_KINDS:
            raise ProgramError(
                f"segment {self.name}: element kind {self.mem!r} is not one of "
                f"{', '.join(MEM_KINDS)}"
            )
        if self.count < 0:
            raise ProgramError(f"segment {self.name}: count must be >= 0, not {self.count}")

    def shape(self, cfg: HwConfig) -> tuple[int, ...]:
        """Shape of the segment's unpacked data: (count, *element shape)."""
        return (self.count, *cfg.elem_shape(self.mem))

    def dtype(self, cfg: HwConfig) -> str:
        """Lane type of the segment, e.g. int8, int4, int32 or uint32 for uops."""
        return "uint32" if self.mem == "uop" else f"int{cfg.lane_bits(self.mem)}"

    def nbytes(self, cfg: HwConfig) -> int:
        """Size of the segment in DRAM bytes."""
        return self.count * cfg.elem_bytes(self.mem)


class Layout:
    """DRAM placement of uop kernels and segments: offsets and element addresses."""

    def __init__(
        self,
        config: HwConfig,
        segments: list[Segment] = (),
        kernels: dict[str, list[Uop]] | None = None,
    ):
        self.config = config
        self.kernels = {name: [Uop(*u) for u in uops] for name, uops in (kernels or {}).items()}
        self.kernel_table: dict[str, tuple[int, int]] = {}
        words = []
        for name, uops in self.kernels.items():
            if not NAME_PATTERN.fullmatch(name):
                raise ProgramError(f"kernel name {name!r} is not a name (letters, digits, _ . -)")
            if not uops:
                raise ProgramError(f"kernel {name} has no uops")
            self.kernel_table[name] = (len(words), len(uops))
            for i, uop in enumerate(uops):
                try:
                    words.append(encode_uop(uop, config))
                except IsaError as exc:
                    raise ProgramError(f"kernel {name} uop {i}: {exc}") from None
        self.segments: dict[str, Segment] = {}
        if words:
            data = np.asarray(words, dtype="<u4").tobytes()
            self._place(Segment(UOP_SEGMENT, "uops", "uop", len(words), data))
        for seg in segments:
            if seg.name == UOP_SEGMENT:
                raise ProgramError(f"segment name {UOP_SEGMENT} is reserved for the uop kernels")
            if seg.name in self.segments:
                raise ProgramError(f"segment {seg.name} is defined twice")
            if seg.data is not None and len(seg.data) != seg.nbytes(config):
                raise ProgramError(
                    f"segment {seg.name}: data has {len(seg.data)} bytes, "
                    f"expected {seg.nbytes(config)}"
                )
            self._place(seg)
        self.insn_offset = self._aligned(self._end, INSN_BYTES)

    @property
    def _end(self) -> int:
        return max((s.offset + s.nbytes(self.config) for s in self.segments.values()), default=0)

    def _aligned(self, offset: int, elem_bytes: int) -> int:
        step = math.lcm(ALIGN, elem_bytes)
        return -(-offset // step) * step

    def _place(self, seg: Segment) -> None:
        seg.offset = self._aligned(self._end, self.config.elem_bytes(seg.mem))
        self.segments[seg.name] = seg

    def segment(self, name: str) -> Segment:
        """The segment called `name`, or a ProgramError listing the segments."""
        try:
            return self.segments[name]
        except KeyError:
            raise ProgramError(
                f"no segment {name!r}; segments: {', '.join(self.segments) or 'none'}"
            ) from None

    def elem_addr(self, name: str, index: int = 0) -> int:
        """DRAM element address (a `dram_base` value) of element `index` of a segment."""
        seg = self.segment(name)
        return seg.offset // self.config.elem_bytes(seg.mem) + index

    def kernel_addr(self, name: str) -> tuple[int, int]:
        """(DRAM uop address, length) of a uop kernel: the dram_base and x_size of its LOAD."""
        if name not in self.kernel_table:
            raise ProgramError(
                f"no uop kernel {name!r}; kernels: {', '.join(self.kernel_table) or 'none'}"
            )
        start, length = self.kernel_table[name]
        return self.elem_addr(UOP_SEGMENT, start), length


class Program(Layout):
    """A complete accelerator program: config, instructions, uop kernels and DRAM segments."""

    def __init__(
        self,
        config: HwConfig,
        insns: list[Insn],
        segments: list[Segment] = (),
        kernels: dict[str, list[Uop]] | None = None,
        host_graph: dict | None = None,
    ):
        super().__init__(config, segments, kernels)
        self.insns = list(insns)
        self.host_graph = host_graph
        self.dram_size = self.insn_offset + len(self.insns) * INSN_BYTES
        self.validate()

    def validate(self) -> None:
        """Check every instruction and that the stream ends with its only FINISH."""
        for index, insn in enumerate(self.insns):
            try:
                check(insn, self.config)
            except IsaError as exc:
                raise ProgramError(f"instruction {index}: {exc}") from None
        finishes = [i for i, insn in enumerate(self.insns) if insn.op == Opcode.FINISH]
        if finishes != [len(self.insns) - 1]:
            raise ProgramError(
                "the instruction stream must end with exactly one FINISH "
                f"(found FINISH at {finishes or 'no index'} of {len(self.insns)} instructions)"
            )

    # -- data ------------------------------------------------------------------------------

    def dram_image(self) -> np.ndarray:
        """A fresh DRAM byte array holding the uops, initial segment data and instructions."""
        dram = np.zeros(self.dram_size, dtype=np.uint8)
        for seg in self.segments.values():
            if seg.data is not None:
                dram[seg.offset : seg.offset + len(seg.data)] = np.frombuffer(seg.data, np.uint8)
        stream = encode_stream(self.insns, self.config)
        dram[self.insn_offset : self.insn_offset + len(stream)] = np.frombuffer(stream, np.uint8)
        return dram

    def write(self, dram: np.ndarray, name: str, values: np.ndarray) -> None:
        """Pack `values` of shape (count, *element shape) into a segment of a DRAM image."""
        seg = self.segment(name)
        values = np.asarray(values)
        if values.shape != seg.shape(self.config):
            raise ProgramError(
                f"segment {name} holds shape {seg.shape(self.config)}, not {values.shape}"
            )
        data = pack_elements(values, self.config, seg.mem)
        dram[seg.offset : seg.offset + len(data)] = np.frombuffer(data, np.uint8)

    def read(self, dram: np.ndarray, name: str) -> np.ndarray:
        """Unpack a segment of a DRAM image into an int64 array (count, *element shape)."""
        seg = self.segment(name)
        return unpack_elements(
            dram[seg.offset : seg.offset + seg.nbytes(self.config)], self.config, seg.mem, seg.count
        )

    # -- file format -------------------------------------------------------------------------

    def manifest(self) -> dict:
        """The JSON manifest of the `.loom` file."""
        cfg = self.config
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "config": cfg.to_dict(),
            "config_id": cfg.config_id_hex,
            "config_name": cfg.name,
            "insn_count": len(self.insns),
            "insn_offset": self.insn_offset,
            "dram_size": self.dram_size,
            "kernels": {k: list(v) for k, v in self.kernel_table.items()},
            "segments": [
                {
                    "name": s.name,
                    "kind": s.kind,
                    "mem": s.mem,
                    "count": s.count,
                    "offset": s.offset,
                    "shape": list(s.shape(cfg)),
                    "dtype": s.dtype(cfg),
                    "has_data": s.data is not None,
                    "meta": s.meta,
                }
                for s in self.segments.values()
                if s.name != UOP_SEGMENT
            ],
            "host_graph": self.host_graph,
        }

    def save(self, path: str | Path) -> None:
        """Write the program as a `.loom` file."""
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("manifest.json", json.dumps(self.manifest(), indent=1))
            zf.writestr("insns.bin", encode_stream(self.insns, self.config))
            for seg in self.segments.values():
                if seg.data is not None:
                    zf.writestr(f"data/{seg.name}.bin", seg.data)

    @classmethod
    def load(cls, path: str | Path) -> Program:
        """Read a `.loom` file; a corrupt, truncated or foreign file raises ProgramError."""
        try:
            with zipfile.ZipFile(path) as zf:
                manifest = _read_manifest(zf)
                return _program_from(zf, manifest)
        except FileNotFoundError:
            raise ProgramError(f"{path}: no such file") from None
        except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError) as exc:
            raise ProgramError(
                f"{path}: not a readable Loom program (corrupt or truncated: {exc})"
            ) from None
        except LoomError as exc:
            raise ProgramError(f"{path}: {exc}") from None


def _read_manifest(zf: zipfile.ZipFile) -> dict:
    try:
        manifest = json.loads(zf.read("manifest.json"))
    except KeyError:
        raise ProgramError("no manifest.json: not a Loom program file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProgramError(f"manifest.json is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise ProgramError("not a Loom program file (manifest format is not loom-program)")
    if manifest.get("version") != FORMAT_VERSION:
        raise ProgramError(
            f"program file format version {manifest.get('version')} is not supported "
            f"(this Loom reads version {FORMAT_VERSION}): recompile or reassemble it"
        )
    return manifest


def _program_from(zf: zipfile.ZipFile, manifest: dict) -> Program:
    try:
        cfg = HwConfig.from_dict(manifest["config"], "program config")
        if cfg.config_id_hex != manifest["config_id"]:
            raise ProgramError(
                f"config ID {manifest['config_id']} does not match its config "
                f"({cfg.config_id_hex}): the file was edited or corrupted"
            )
        insns = decode_stream(zf.read("insns.bin"), cfg)
        if len(insns) != manifest["insn_count"]:
            raise ProgramError(
                f"insns.bin holds {len(insns)} instructions, manifest says "
                f"{manifest['insn_count']}"
            )
        kernels = _read_kernels(zf, manifest, cfg)
        segments = [
            Segment(
                s["name"],
                s["kind"],
                s["mem"],
                s["count"],
                zf.read(f"data/{s['name']}.bin") if s["has_data"] else None,
                s["meta"],
            )
            for s in manifest["segments"]
        ]
        program = Program(cfg, insns, segments, kernels, manifest["host_graph"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ProgramError(f"manifest is missing or has a malformed entry ({exc})") from None
    except (ConfigError, IsaError) as exc:
        raise ProgramError(str(exc)) from None
    if program.dram_size != manifest["dram_size"]:
        raise ProgramError("the DRAM layout does not match the manifest: the file is corrupt")
    return program


def _read_kernels(zf: zipfile.ZipFile, manifest: dict, cfg: HwConfig) -> dict[str, list[Uop]]:
    table = manifest["kernels"]
    if not table:
        return {}
    words = np.frombuffer(zf.read(f"data/{UOP_SEGMENT}.bin"), dtype="<u4")
    kernels = {}
    for name, (start, length) in table.items():
        if start + length > len(words):
            raise ProgramError(f"kernel {name} runs past the end of the uop data")
        kernels[name] = [decode_uop(int(w), cfg) for w in words[start : start + length]]
    return kernels
