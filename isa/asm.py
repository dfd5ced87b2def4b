"""Text assembler and disassembler of Loom programs.

One statement per line; `;` or `#` starts a comment; mnemonics, keys and keywords are
case-insensitive, segment and kernel names are not::

    .config small                        ; a preset, a .toml/.json file, or every field inline
    .segment NAME KIND MEM COUNT [data=FILE.npy]
    .kernel NAME
        uop DST SRC [WGT]                ; or uop dst=N src=N [wgt=N]
    .end
    load inp|wgt|acc|uop sram=N dram=ADDR y=N x=N stride=N [pad=T,B,L,R] [pop=..] [push=..]
    load uop sram=N kernel=NAME
    store out sram=N dram=ADDR y=N x=N stride=N
    nop load|compute|store
    gemm uop=B:E iter=O,I [dst=O,I] [src=O,I] [wgt=O,I] [reset]
    alu min|max|add|shr|mul|rshr|mov uop=B:E iter=O,I [dst=O,I] [src=O,I] [imm=V]
    alu mulr uop=B:E iter=O,I [dst=O,I] [src=O,I] shift=N       ; multiplier from ACC[src]
    alu clip uop=B:E iter=O,I [dst=O,I] [src=O,I] clip=LO,HI    ; or imm=V, the encoded bounds
    finish

ADDR is a number, `SEG` or `SEG+N`; `pop=`/`push=` take `prev`, `next` or `prev,next`.
Symbolic addresses need the whole DRAM `Layout`, and segments and kernels may be declared after
their use, so assembly runs in two passes: the first sorts the lines into directives, kernels and
instruction lines; the second encodes the instructions against the Layout. `disassemble` prints
the one canonical text of a Program, which assembles back to the same instructions and kernels.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache, partial
from pathlib import Path

import numpy as np

from isa.config import HwConfig, load_config, preset_names
from isa.errors import AsmError, LoomError
from isa.formats import DEP_FLAGS, AluOp, MemType, Opcode
from isa.instructions import Insn, Uop, encode, encode_uop
from isa.packing import pack_elements
from isa.program import UOP_SEGMENT, Layout, Program, Segment
from isa.semantics import clip_bounds, clip_imm

# What `.segment` may declare; the `uops` kind and memory belong to the `.kernel` blocks.
SEGMENT_KINDS = ("input", "output", "weights", "scratch")
SEGMENT_MEMS = ("inp", "wgt", "acc", "out")

_NAME = re.compile(r"[A-Za-z_][\w.\-]*")
_NUMBER = re.compile(r"-?(0x[0-9a-f]+|[0-9]+)", re.IGNORECASE)
_COMMENT = re.compile(r"[;#].*")
# Spaces around these are dropped so `pad = 1, 2, 0, 0` and `dram=x + 4` read as one token.
_JOINERS = re.compile(r"\s*([=,:+])\s*")

_CONFIG_FIELDS = tuple(f.name for f in dataclasses.fields(HwConfig))
# Fields the canonical form may leave out (at their defaults): an inline .config may too.
_OPTIONAL_CONFIG_FIELDS = set(_CONFIG_FIELDS) - set(HwConfig().to_dict())
# Every type is accepted so that `isa.instructions.check` explains the illegal ones.
_MEM_TYPES = {m.kind: m for m in (MemType.INP, MemType.WGT, MemType.ACC, MemType.UOP, MemType.OUT)}
_ALU_OPS = {o.name.lower(): o for o in AluOp}
_TRANSFER_KEYS = ("sram", "dram", "y", "x", "stride", "pad", "kernel", "pop", "push")
_TRANSFER_NEEDS = ("sram", "dram", "y", "x", "stride")
_KERNEL_SETS = ("dram", "y", "x", "stride", "pad")
_LOOP_KEYS = ("uop", "iter", "dst", "src")
_DEP_KEYS = ("pop", "push")
_PAIRS = {
    "iter": ("iter_out", "iter_in"),
    "dst": ("dst_factor_out", "dst_factor_in"),
    "src": ("src_factor_out", "src_factor_in"),
    "wgt": ("wgt_factor_out", "wgt_factor_in"),
}
_PADS = ("y_pad_0", "y_pad_1", "x_pad_0", "x_pad_1")
_INDEX_COLUMN = 48

# The exact instruction each `nop STAGE` stands for, before its dependency flags.
_NOPS = {
    "load": Insn(Opcode.LOAD, mem_type=MemType.INP),
    "compute": Insn(Opcode.LOAD, mem_type=MemType.UOP),
    "store": Insn(Opcode.STORE, mem_type=MemType.OUT),
}


class _Bad(Exception):
    """A mistake on the line being read; `_at` prefixes the source and line number."""


@contextmanager
def _at(source: str, line: int) -> Iterator[None]:
    try:
        yield
    except (_Bad, LoomError) as exc:
        raise AsmError(f"{source}:{line}: {exc}") from None


# -- first pass: sort the lines ----------------------------------------------------------------


@dataclass
class _SegmentDecl:
    line: int
    segment: Segment
    data: str | None


@dataclass
class _KernelDecl:
    line: int
    uops: list[tuple[int, Uop]] = field(default_factory=list)


@dataclass
class _Text:
    """What the first pass found in one source; nothing in it depends on the config yet."""

    source: str
    last_line: int = 1
    config: tuple[int, list[str]] | None = None
    segments: dict[str, _SegmentDecl] = field(default_factory=dict)
    kernels: dict[str, _KernelDecl] = field(default_factory=dict)
    insns: list[tuple[int, list[str]]] = field(default_factory=list)
    open_kernel: str | None = None


def _words(line: str) -> list[str]:
    return _JOINERS.sub(r"\1", _COMMENT.sub("", line)).split()


def _scan(text: str, source: str) -> _Text:
    found = _Text(source)
    for number, line in enumerate(text.splitlines(), 1):
        found.last_line = number
        words = _words(line)
        if words:
            with _at(source, number):
                _statement(found, number, words)
    if found.open_kernel is not None:
        line = found.kernels[found.open_kernel].line
        raise AsmError(
            f"{source}:{line}: .kernel {found.open_kernel} has no .end: close it with .end"
        )
    return found


def _statement(found: _Text, line: int, words: list[str]) -> None:
    head = words[0].lower()
    if found.open_kernel is not None and head not in ("uop", ".end"):
        raise _Bad(
            f"{words[0]} inside .kernel {found.open_kernel}: only uop lines go there; "
            f"close the kernel with .end first"
        )
    if head in _DIRECTIVES:
        _DIRECTIVES[head](found, line, words[1:])
    elif head.startswith("."):
        raise _Bad(f"unknown directive {words[0]}: directives are {', '.join(_DIRECTIVES)}")
    elif head == "uop":
        _uop_line(found, line, words[1:])
    else:
        found.insns.append((line, words))


def _config_directive(found: _Text, line: int, args: list[str]) -> None:
    if found.config is not None:
        raise _Bad(f"second .config (the first is at line {found.config[0]}): keep one")
    if not args:
        raise _Bad(
            f".config needs a preset ({', '.join(preset_names())}), a config file, "
            f"or every HwConfig field as key=value"
        )
    found.config = (line, args)


def _segment_directive(found: _Text, line: int, args: list[str]) -> None:
    if len(args) not in (4, 5):
        raise _Bad(".segment takes NAME KIND MEM COUNT [data=FILE.npy]")
    name, kind, mem, count = args[0], args[1].lower(), args[2].lower(), args[3]
    _check_new_name(name, "segment", found.segments)
    if name == UOP_SEGMENT:
        raise _Bad(f"segment name {name} is reserved for the uop kernels: rename it")
    if kind not in SEGMENT_KINDS:
        raise _Bad(f"segment {name}: kind {args[1]} is not one of {', '.join(SEGMENT_KINDS)}")
    if mem not in SEGMENT_MEMS:
        raise _Bad(f"segment {name}: memory {args[2]} is not one of {', '.join(SEGMENT_MEMS)}")
    size = _int(count, "COUNT")
    if size < 0:
        raise _Bad(f"segment {name}: COUNT must be >= 0, not {size}")
    data = _keys(args[4:], ("data",), ".segment").get("data")
    found.segments[name] = _SegmentDecl(line, Segment(name, kind, mem, size), data)


def _kernel_directive(found: _Text, line: int, args: list[str]) -> None:
    if len(args) != 1:
        raise _Bad(".kernel takes one NAME")
    _check_new_name(args[0], "kernel", found.kernels)
    found.kernels[args[0]] = _KernelDecl(line)
    found.open_kernel = args[0]


def _end_directive(found: _Text, line: int, args: list[str]) -> None:
    if found.open_kernel is None:
        raise _Bad(".end without an open .kernel")
    if args:
        raise _Bad(f".end takes nothing, not {' '.join(args)}")
    if not found.kernels[found.open_kernel].uops:
        raise _Bad(f"kernel {found.open_kernel} has no uops: add uop lines before .end")
    found.open_kernel = None


_DIRECTIVES: dict[str, Callable[[_Text, int, list[str]], None]] = {
    ".config": _config_directive,
    ".segment": _segment_directive,
    ".kernel": _kernel_directive,
    ".end": _end_directive,
}


def _check_new_name(name: str, what: str, declared: dict) -> None:
    if not _NAME.fullmatch(name):
        raise _Bad(
            f"{what} name {name!r} is not a name: use letters, digits, _, . and -, "
            f"starting with a letter or _"
        )
    if name in declared:
        raise _Bad(f"{what} {name} is already declared at line {declared[name].line}: rename one")


def _uop_line(found: _Text, line: int, args: list[str]) -> None:
    if found.open_kernel is None:
        raise _Bad("uop outside a kernel: put uop lines between .kernel NAME and .end")
    found.kernels[found.open_kernel].uops.append((line, _uop(args)))


def _uop(args: list[str]) -> Uop:
    names = ("dst", "src", "wgt")
    if any("=" in a for a in args):
        keys = _keys(args, names, "uop")
        _need(keys, names[:2], "uop")
        return Uop(*(_int(keys.get(n, "0"), n) for n in names))
    if len(args) not in (2, 3):
        raise _Bad("uop takes DST SRC [WGT] or dst=N src=N [wgt=N]")
    return Uop(*(_int(a, n) for a, n in zip(args, names, strict=False)))


# -- values ------------------------------------------------------------------------------------


def _keys(
    words: list[str], allowed: tuple[str, ...], what: str, flags: tuple[str, ...] = ()
) -> dict[str, str]:
    """key=value words (and bare flags, valued "") by lowercased key, rejecting strays."""
    found: dict[str, str] = {}
    takes = ", ".join([f"{k}=" for k in allowed] + list(flags)) or "nothing"
    for word in words:
        key, eq, value = word.partition("=")
        key = key.lower()
        if eq and key not in allowed:
            raise _Bad(f"{what} has no key {key}=; it takes {takes}")
        if not eq and key not in flags:
            raise _Bad(f"{what} does not take {word!r}; it takes {takes}")
        if key in found:
            raise _Bad(f"{key} is given twice: keep one")
        found[key] = value
    return found


def _need(keys: dict[str, str], names: tuple[str, ...], what: str) -> None:
    missing = [f"{n}=" for n in names if n not in keys]
    if missing:
        raise _Bad(f"{what} needs {', '.join(missing)} (a missing key is not taken as 0)")


def _int(text: str, key: str) -> int:
    if not _NUMBER.fullmatch(text):
        raise _Bad(f"{key}={text} is not a number: write decimal, 0x hex or -decimal")
    return int(text, 16 if "x" in text.lower() else 10)


def _ints(text: str, key: str, count: int, sep: str) -> list[int]:
    parts = text.split(sep)
    if len(parts) != count:
        raise _Bad(f"{key}={text} must be {count} numbers joined by {sep!r}")
    return [_int(p, key) for p in parts]


def _choice(words: list[str], choices: dict, mnemonic: str) -> tuple:
    """The keyword that must follow a mnemonic, and the remaining words."""
    if not words or words[0].lower() not in choices:
        got = repr(words[0]) if words else "nothing"
        raise _Bad(f"{mnemonic} takes {'|'.join(choices)} first, not {got}")
    return choices[words[0].lower()], words[1:]


def _deps(keys: dict[str, str]) -> dict[str, int]:
    fields = {}
    for verb in _DEP_KEYS:
        if verb not in keys:
            continue
        sides = keys[verb].lower().split(",")
        if len(set(sides)) != len(sides) or not set(sides) <= {"prev", "next"}:
            raise _Bad(f"{verb}={keys[verb]} must be prev, next or prev,next")
        fields |= {f"{verb}_{side}": 1 for side in sides}
    return fields


# -- second pass: config, segments, kernels, instructions --------------------------------------


def _resolve_config(found: _Text, given: HwConfig | None, root: Path) -> HwConfig:
    if found.config is None:
        if given is None:
            raise AsmError(
                f"{found.source}:1: no .config directive: add `.config small` or pass --config"
            )
        return given
    line, args = found.config
    with _at(found.source, line):
        cfg = _config_from(args, root)
        if given is not None and given != cfg:
            raise _Bad(
                f".config {cfg.name} differs from the config passed in ({given.name}): "
                f"drop one of them"
            )
    return cfg


def _config_from(args: list[str], root: Path) -> HwConfig:
    if len(args) == 1 and "=" not in args[0]:
        return _named_config(args[0], root)
    keys = _keys(args, _CONFIG_FIELDS, ".config")
    missing = [f for f in _CONFIG_FIELDS if f not in keys and f not in _OPTIONAL_CONFIG_FIELDS]
    if missing:
        raise _Bad(f".config with inline fields needs every field; missing {', '.join(missing)}")
    return HwConfig(**{k: _int(v, k) for k, v in keys.items()})


def _named_config(name: str, root: Path) -> HwConfig:
    if name.lower() in preset_names():
        return load_config(name.lower())
    path = root / name
    if not path.is_file():
        raise _Bad(
            f".config {name} is neither a preset ({', '.join(preset_names())}) nor a file "
            f"({path})"
        )
    try:
        return load_config(path)
    except (OSError, ValueError) as exc:  # load_config lets unreadable files through
        raise _Bad(f".config {name}: cannot read {path} ({exc})") from None


def _segments(found: _Text, cfg: HwConfig, root: Path) -> list[Segment]:
    segments = []
    for decl in found.segments.values():
        segment = decl.segment
        if decl.data is not None:
            with _at(found.source, decl.line):
                data = _read_data(decl.data, segment, cfg, root)
            segment = dataclasses.replace(segment, data=data)
        segments.append(segment)
    return segments


def _read_data(file: str, segment: Segment, cfg: HwConfig, root: Path) -> bytes:
    path = root / file
    try:
        with path.open("rb") as stream:
            values = np.lib.format.read_array(stream, allow_pickle=False)
    except Exception as exc:  # numpy's header parser raises many types for a corrupt file
        raise _Bad(f"data={file}: cannot read {path} as a .npy array ({exc})") from None
    if values.dtype.kind not in "iu":
        raise _Bad(f"data={file} holds {values.dtype} values: segment data must be integers")
    shape = segment.shape(cfg)
    if values.shape != shape:
        raise _Bad(f"data={file} has shape {values.shape}; segment {segment.name} needs {shape}")
    return pack_elements(values, cfg, segment.mem)


def _kernels(found: _Text, cfg: HwConfig) -> dict[str, list[Uop]]:
    for decl in found.kernels.values():
        for line, uop in decl.uops:
            with _at(found.source, line):
                encode_uop(uop, cfg)
    return {name: [uop for _, uop in decl.uops] for name, decl in found.kernels.items()}


def _instructions(found: _Text, layout: Layout) -> list[Insn]:
    insns = []
    for line, words in found.insns:
        with _at(found.source, line):
            insn = _instruction(words, layout)
            encode(insn, layout.config)
        insns.append(insn)
    _check_finish(found, insns)
    return insns


def _check_finish(found: _Text, insns: list[Insn]) -> None:
    lines = [
        line for (line, _), insn in zip(found.insns, insns, strict=True) if insn.op == Opcode.FINISH
    ]
    if not lines:
        raise AsmError(f"{found.source}:{found.last_line}: no finish: end the program with finish")
    if lines[0] != found.insns[-1][0]:
        raise AsmError(
            f"{found.source}:{lines[0]}: finish must be the last instruction, and the only finish"
        )


def _instruction(words: list[str], layout: Layout) -> Insn:
    build = _BUILDERS.get(words[0].lower())
    if build is None:
        raise _Bad(f"unknown mnemonic {words[0]}: use {', '.join(_BUILDERS)}")
    return build(words[1:], layout)


def _transfer(op: Opcode, words: list[str], layout: Layout) -> Insn:
    mnemonic = op.name.lower()
    mem, rest = _choice(words, _MEM_TYPES, mnemonic)
    what = f"{mnemonic} {mem.kind}"
    keys = _keys(rest, _TRANSFER_KEYS, what)
    if "kernel" in keys:
        fields = _kernel_fields(op, mem, keys, layout, what)
    else:
        _need(keys, _TRANSFER_NEEDS, what)
        fields = {
            "dram_base": _dram(keys["dram"], mem, layout),
            "y_size": _int(keys["y"], "y"),
            "x_size": _int(keys["x"], "x"),
            "x_stride": _int(keys["stride"], "stride"),
        }
        if "pad" in keys:
            fields |= dict(zip(_PADS, _ints(keys["pad"], "pad", 4, ","), strict=True))
    sram = _int(keys["sram"], "sram")
    return Insn(op, mem_type=mem, sram_base=sram, **fields, **_deps(keys))


def _kernel_fields(
    op: Opcode, mem: MemType, keys: dict[str, str], layout: Layout, what: str
) -> dict[str, int]:
    if op != Opcode.LOAD or mem != MemType.UOP:
        raise _Bad(f"kernel= goes only with load uop, not {what}")
    given = [f"{k}=" for k in _KERNEL_SETS if k in keys]
    if given:
        raise _Bad(f"kernel= sets dram, y, x and stride itself: remove {', '.join(given)}")
    _need(keys, ("sram",), what)
    name = keys["kernel"]
    if name not in layout.kernels:
        raise _Bad(f"unknown kernel {name}; kernels: {', '.join(layout.kernels) or 'none'}")
    dram, length = layout.kernel_addr(name)
    return {"dram_base": dram, "y_size": 1, "x_size": length, "x_stride": length}


def _dram(text: str, mem: MemType, layout: Layout) -> int:
    if not _NAME.match(text):
        return _int(text, "dram")
    name, plus, index = text.partition("+")
    segment = layout.segments.get(name)
    if segment is None:
        raise _Bad(
            f"unknown segment {name} in dram={text}; segments: "
            f"{', '.join(layout.segments) or 'none'}"
        )
    if segment.mem != mem.kind:
        raise _Bad(
            f"segment {name} holds {segment.mem} elements, but this instruction addresses "
            f"{mem.kind}: use a {mem.kind} segment or a number"
        )
    offset = _int(index, "dram offset") if plus else 0
    if not 0 <= offset < segment.count:
        raise _Bad(f"dram={text} is outside segment {name} ({segment.count} elements)")
    return layout.elem_addr(name, offset)


def _nop(words: list[str], layout: Layout) -> Insn:
    stage, rest = _choice(words, {s: s for s in _NOPS}, "nop")
    return _NOPS[stage].replace(**_deps(_keys(rest, _DEP_KEYS, f"nop {stage}")))


def _loop_fields(keys: dict[str, str], what: str) -> dict[str, int]:
    _need(keys, ("uop", "iter"), what)
    fields = dict(zip(("uop_bgn", "uop_end"), _ints(keys["uop"], "uop", 2, ":"), strict=True))
    for key in ("iter", "dst", "src"):
        fields |= _pair(keys, key)
    return fields


def _pair(keys: dict[str, str], key: str) -> dict[str, int]:
    return dict(zip(_PAIRS[key], _ints(keys.get(key, "0,0"), key, 2, ","), strict=True))


def _gemm(words: list[str], layout: Layout) -> Insn:
    keys = _keys(words, (*_LOOP_KEYS, "wgt", *_DEP_KEYS), "gemm", flags=("reset",))
    return Insn(
        Opcode.GEMM,
        **_loop_fields(keys, "gemm"),
        **_pair(keys, "wgt"),
        reset=int("reset" in keys),
        **_deps(keys),
    )


def _alu(words: list[str], layout: Layout) -> Insn:
    op, rest = _choice(words, _ALU_OPS, "alu")
    what = f"alu {op.name.lower()}"
    keys = _keys(rest, (*_LOOP_KEYS, "imm", "shift", "clip", *_DEP_KEYS), what)
    imm = {"use_imm": 1, "imm": _int(keys["imm"], "imm")} if "imm" in keys else {}
    if "shift" in keys:  # MULR's shift, in the immediate field with use_imm=0
        imm = {"imm": _int(keys["shift"], "shift")}
    if "clip" in keys:
        lo, hi = _ints(keys["clip"], "clip", 2, ",")
        try:
            imm = {"use_imm": 1, "imm": clip_imm(lo, hi)}
        except ValueError as exc:
            raise _Bad(str(exc)) from None
    return Insn(Opcode.ALU, alu_op=op, **_loop_fields(keys, what), **imm, **_deps(keys))


def _finish(words: list[str], layout: Layout) -> Insn:
    return Insn(Opcode.FINISH, **_deps(_keys(words, _DEP_KEYS, "finish")))


_BUILDERS: dict[str, Callable[[list[str], Layout], Insn]] = {
    "load": partial(_transfer, Opcode.LOAD),
    "store": partial(_transfer, Opcode.STORE),
    "nop": _nop,
    "gemm": _gemm,
    "alu": _alu,
    "finish": _finish,
}


@contextmanager
def _whole(source: str) -> Iterator[None]:
    try:
        yield
    except LoomError as exc:
        raise AsmError(f"{source}: {exc}") from None


def assemble(
    text: str,
    source: str = "<text>",
    config: HwConfig | None = None,
    base_dir: Path | None = None,
) -> Program:
    """Assemble program text; `config` stands in for a missing `.config`, `base_dir` for data=."""
    # Relative `data=` and `.config` file paths resolve against base_dir, else the working dir.
    root = Path(base_dir or ".")
    found = _scan(text, source)
    cfg = _resolve_config(found, config, root)
    segments = _segments(found, cfg, root)
    kernels = _kernels(found, cfg)
    with _whole(source):
        layout = Layout(cfg, segments, kernels)
    insns = _instructions(found, layout)
    with _whole(source):
        return Program(cfg, insns, segments, kernels)


def assemble_file(path: str | Path, config: HwConfig | None = None) -> Program:
    """Assemble a text file; `data=` paths are relative to the file's folder."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AsmError(f"{path}: cannot read it as assembly text ({exc})") from None
    return assemble(text, str(path), config, path.parent)


# -- disassembler ------------------------------------------------------------------------------


def disassemble(program: Program) -> str:
    """The canonical text of a program; it assembles back to the same instructions and kernels."""
    sections = [
        [_config_text(program.config)],
        [_segment_text(s) for s in program.segments.values() if s.name != UOP_SEGMENT],
        _kernel_lines(program),
        _insn_lines(program),
    ]
    return "\n\n".join("\n".join(lines) for lines in sections if lines) + "\n"


@cache
def _presets() -> dict[str, HwConfig]:
    return {name: load_config(name) for name in preset_names()}


def _config_text(cfg: HwConfig) -> str:
    for name, preset in _presets().items():
        if preset == cfg:
            return f".config {name}"
    return ".config " + " ".join(f"{k}={v}" for k, v in cfg.to_dict().items())


def _segment_text(segment: Segment) -> str:
    text = f".segment {segment.name} {segment.kind} {segment.mem} {segment.count}"
    if segment.data is None:
        return text
    return f"{text}  ; segment {segment.name}: {len(segment.data)} bytes of initial data not shown"


def _kernel_lines(program: Program) -> list[str]:
    lines = []
    for name, uops in program.kernels.items():
        lines.append(f".kernel {name}")
        lines += [f"    uop {u.dst} {u.src} {u.wgt}" for u in uops]
        lines.append(".end")
    return lines


def _insn_lines(program: Program) -> list[str]:
    # (dram_base, x_size) of every loadable kernel, to print `load uop kernel=NAME`.
    kernels = {program.kernel_addr(n): n for n in program.kernels}
    lines = []
    for index, insn in enumerate(program.insns):
        lines.append(f"{_insn_text(insn, program, kernels):<{_INDEX_COLUMN}} ; #{index}")
    return lines


def _insn_text(insn: Insn, program: Program, kernels: dict[tuple[int, int], str]) -> str:
    if insn.op == Opcode.GEMM:
        body = _gemm_text(insn)
    elif insn.op == Opcode.ALU:
        body = _alu_text(insn)
    elif insn.op == Opcode.FINISH:
        body = "finish"
    else:
        body = _transfer_text(insn, program, kernels)
    deps = []
    for verb in _DEP_KEYS:
        sides = [side for side in ("prev", "next") if getattr(insn, f"{verb}_{side}")]
        if sides:
            deps.append(f"{verb}={','.join(sides)}")
    return " ".join([body, *deps])


def _transfer_text(insn: Insn, program: Program, kernels: dict[tuple[int, int], str]) -> str:
    bare = insn.replace(**dict.fromkeys(DEP_FLAGS, 0))
    for stage, nop in _NOPS.items():
        if bare == nop:
            return f"nop {stage}"
    head = f"{insn.op.name.lower()} {insn.mem.kind} sram={insn.sram_base}"
    pads = [getattr(insn, p) for p in _PADS]
    kernel = kernels.get((insn.dram_base, insn.x_size))
    if (kernel and insn.op == Opcode.LOAD and insn.mem == MemType.UOP and insn.y_size == 1
            and insn.x_stride == insn.x_size and not any(pads)):
        return f"{head} kernel={kernel}"
    text = (
        f"{head} dram={_addr_text(insn.dram_base, insn.mem.kind, program)} y={insn.y_size} "
        f"x={insn.x_size} stride={insn.x_stride}"
    )
    return f"{text} pad={','.join(map(str, pads))}" if any(pads) else text


def _addr_text(addr: int, kind: str, program: Program) -> str:
    for segment in program.segments.values():
        index = addr - program.elem_addr(segment.name)
        if segment.mem == kind and 0 <= index < segment.count:
            return f"{segment.name}+{index}" if index else segment.name
    return str(addr)


def _loop_text(insn: Insn) -> str:
    return (
        f"uop={insn.uop_bgn}:{insn.uop_end} iter={insn.iter_out},{insn.iter_in} "
        f"dst={insn.dst_factor_out},{insn.dst_factor_in} "
        f"src={insn.src_factor_out},{insn.src_factor_in}"
    )


def _gemm_text(insn: Insn) -> str:
    text = f"gemm {_loop_text(insn)} wgt={insn.wgt_factor_out},{insn.wgt_factor_in}"
    return f"{text} reset" if insn.reset else text


def _alu_text(insn: Insn) -> str:
    text = f"alu {AluOp(insn.alu_op).name.lower()} {_loop_text(insn)}"
    if insn.alu_op == AluOp.CLIP and insn.use_imm:
        return f"{text} clip={','.join(str(b) for b in clip_bounds(insn.imm))}"
    if insn.use_imm:
        return f"{text} imm={insn.imm}"
    return f"{text} shift={insn.imm}" if insn.alu_op == AluOp.MULR else text
