"""The `loom` command: configs, assembler, disassembler, functional simulation and the demo."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from isa.config import HwConfig, load_config, preset_names
from isa.errors import LoomError
from loom import board_commands, model_commands, sweep_commands, tune_commands


class UsageError(LoomError):
    """A command-line argument that cannot be used as given."""


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors on one line."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _config_arg(value: str | None) -> HwConfig | None:
    return None if value is None else load_config(value)


def _load_program(path: str, config: str | None):
    """A Program from a .loom file or assembler source (.s/.asm)."""
    from isa.asm import assemble_file
    from isa.program import Program

    if Path(path).suffix in (".s", ".asm"):
        return assemble_file(path, config=_config_arg(config))
    if config is not None:
        raise UsageError("--config applies to assembler source only; a .loom file carries its own")
    return Program.load(path)


def _bindings(items: list[str], flag: str) -> list[tuple[str, Path]]:
    pairs = []
    for item in items:
        name, sep, file = item.partition("=")
        if not sep or not name or not file:
            raise UsageError(f"{flag} takes SEGMENT=FILE.npy, not {item!r}")
        pairs.append((name, Path(file)))
    return pairs


def cmd_config(args) -> int:
    """Print a config and its derived quantities, or list the presets."""
    if args.list:
        for name in preset_names():
            print(f"{name:12s} {load_config(name).name}")
        return 0
    description = load_config(args.config).describe()
    if args.json:
        print(json.dumps(description, indent=1))
        return 0
    print(f"{description['name']}  (config ID {description['config_id']})")
    for key, value in description["fields"].items():
        print(f"  {key:18s} {value}")
    print(f"  {'macs_per_cycle':18s} {description['macs_per_cycle']}")
    print(f"  {'sram_bytes':18s} {description['sram_bytes']}")
    for key in ("elem_bits", "index_bits", "buffer_bytes"):
        print(f"  {key:18s} " + "  ".join(f"{k}={v}" for k, v in description[key].items()))
    for name, rows in description["formats"].items():
        used = sum(r["width"] for r in rows)
        print(f"  {name:6s} {used:3d} bits: " + " ".join(f"{r['name']}:{r['width']}" for r in rows))
    return 0


def cmd_asm(args) -> int:
    """Assemble source text into a .loom program file."""
    from isa.asm import assemble_file

    program = assemble_file(args.source, config=_config_arg(args.config))
    out = Path(args.output or Path(args.source).with_suffix(".loom"))
    program.save(out)
    print(
        f"{out}: {len(program.insns)} instructions, {len(program.kernels)} uop kernels, "
        f"{len(program.segments)} segments, {program.dram_size} bytes of DRAM, "
        f"config {program.config.name}"
    )
    return 0


def cmd_disasm(args) -> int:
    """Disassemble a .loom program file into assembler source."""
    from isa.asm import disassemble
    from isa.program import Program

    text = disassemble(Program.load(args.program))
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def _simulator(args, cfg: HwConfig):
    """The simulator a `loom sim` asks for, and how its run is called."""
    if args.backend == "functional":
        if args.waves or args.trace:
            raise UsageError("--waves and --trace need --backend rtl")
        from sim.functional import FunctionalSim

        return FunctionalSim(cfg).run
    from sim.rtl import RtlSim

    waves = None if args.waves is None else Path(args.waves).suffix.lstrip(".")
    sim = RtlSim(cfg, args.dram, waves=waves)
    return lambda program, dram: sim.run(program, dram, waves=args.waves, trace=args.trace)


def cmd_sim(args) -> int:
    """Run a program on the functional or the RTL simulator and print its statistics."""
    program = _load_program(args.program, args.config)
    inputs = _bindings(args.input, "--input")
    outputs = _bindings(args.output, "--output")
    dram = program.dram_image()
    for name, file in inputs:
        try:
            values = np.load(file)
        except (OSError, ValueError) as exc:
            raise UsageError(f"--input {name}: cannot read {file} as .npy ({exc})") from None
        program.write(dram, name, values)
    for name, _ in outputs:
        program.segment(name)
    stats = _simulator(args, program.config)(program, dram)
    for name, file in outputs:
        np.save(file, program.read(dram, name))
    if args.json:
        print(json.dumps({"config": program.config.name, "stats": stats.to_dict()}))
    else:
        print(f"ran {len(program.insns)} instructions on the {args.backend} simulator")
        _print_stats(stats.to_dict())
    return 0


def _print_stats(stats: dict, indent: str = "  ") -> None:
    for key, value in stats.items():
        if isinstance(value, dict):
            value = "  ".join(f"{k}={v}" for k, v in value.items())
        print(f"{indent}{key:16s} {value}")


def cmd_verilog(args) -> int:
    """Generate the accelerator's Verilog and manifest for a config."""
    from hw.verilog import write

    summary = write(load_config(args.config), args.output)
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"{summary['verilog']}: {summary['lines']} lines, {summary['bytes']} bytes in "
            f"{summary['seconds']} s for {summary['config_name']} (ID {summary['config_id']})"
        )
    return 0


def cmd_synth(args) -> int:
    """Estimate FPGA resources of a config's accelerator with Yosys."""
    from boards.synth import synthesize_config

    cfg = load_config(args.config)
    resources = synthesize_config(cfg, args.family, use_dsp=not args.lut_multipliers)
    if args.json:
        print(json.dumps({"config": cfg.name, **resources.to_dict()}))
    else:
        print(
            f"{cfg.name} on {args.family}: {resources.lut} LUT, {resources.ff} FF, "
            f"{resources.dsp} DSP, {resources.bram:g} BRAM, {resources.lutram} LUTRAM"
            + ("" if resources.lut_mapper == "abc9" else f" (LUTs by {resources.lut_mapper})")
        )
    return 0


def cmd_boards(args) -> int:
    """List the bundled boards, or show one board's budgets and default config."""
    from boards.boards import board_names, load_board

    if args.name is None:
        boards = [load_board(name) for name in board_names()]
        if args.json:
            print(json.dumps([board.to_dict() for board in boards]))
        else:
            print("\n".join(board.summary() for board in boards))
        return 0
    board = load_board(args.name)
    if args.json:
        print(json.dumps(board.to_dict(), indent=1))
        return 0
    print(f"{board.title}  ({board.name})")
    for key, value in board.to_dict().items():
        if key not in ("name", "title", "default_config"):
            print(f"  {key:24s} {value}")
    return 0


def cmd_demo(args) -> int:
    """Verilog for `default`, the sample program, and the digits CNN on the accelerator."""
    from loom.demo import run_demo

    report = run_demo(args.output, backend=args.backend, seed=args.seed)
    sample, digits, verilog = report["sample"], report["digits"], report["verilog"]
    ok = sample["correct"] and digits["accuracy"] >= digits["float_accuracy"] - 0.01
    if args.json:
        print(json.dumps(report | {"pass": ok}))
        return 0 if ok else 1
    print(f"verilog:  {verilog['verilog']} ({verilog['lines']} lines, {verilog['seconds']} s) "
          f"for {verilog['config_name']} (ID {verilog['config_id']})")
    print(f"sample:   {sample['program']} on {sample['config']}: "
          f"{'PASS' if sample['correct'] else 'FAIL'} ({sample['elements']} outputs, "
          f"{sample['stats']['macs']} MACs, {sample['stats']['instructions']} instructions)")
    print(f"digits:   {digits['model']} on {digits['config']}: {digits['accelerated_layers']} "
          f"layers on the accelerator, {digits['host_ops']} host ops")
    print(f"accuracy: {digits['accuracy']:.2%} on {digits['images']} test images "
          f"({digits['backend']} backend); onnxruntime float: {digits['float_accuracy']:.2%}")
    if digits["cycles_per_image"] is not None:
        print(f"cycles:   {digits['cycles_per_image']:.0f} per image; GEMM core utilization "
              f"{digits['utilization']:.1%} (the model is tiny: 1-16 channels on a 16x16 core)")
    return 0 if ok else 1


def cmd_fuzz(args) -> int:
    """Run random programs on a backend and the functional simulator; report the first mismatch."""
    import contextlib

    from isa.errors import ToolError
    from sim.fuzz import fuzz

    cfg = load_config(args.config)
    if args.backend == "rtl":
        try:
            from sim.rtl import RtlSim
        except ImportError as exc:
            raise ToolError(
                f"the rtl backend is not available ({exc}): use --backend amaranth"
            ) from None
        backend = RtlSim(cfg)
    else:
        from sim.amaranth_backend import AmaranthSim

        # Random DRAM back-pressure varies the interleaving of the units from program to program.
        backend = AmaranthSim(cfg, stall=0.2)
    with contextlib.closing(backend):
        report = fuzz(cfg, backend.run, programs=args.programs, seed=args.seed, size=args.size)
    print(report)
    return 0 if report.ok else 1


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = _Parser(
        prog="loom", description="Loom: hardware-software co-design for a VTA-like accelerator."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("config", help="show a hardware config and its derived encoding")
    p.add_argument("config", nargs="?", default="default", help="preset name or TOML/JSON path")
    p.add_argument("--list", action="store_true", help="list the bundled presets")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("asm", help="assemble source text into a .loom program")
    p.add_argument("source", help="assembler source (.s)")
    p.add_argument("-o", "--output", help="program file to write (default: SOURCE.loom)")
    p.add_argument("--config", help="config when the source has no .config directive")
    p.set_defaults(func=cmd_asm)

    p = sub.add_parser("disasm", help="disassemble a .loom program into source text")
    p.add_argument("program", help="program file (.loom)")
    p.add_argument("-o", "--output", help="source file to write (default: stdout)")
    p.set_defaults(func=cmd_disasm)

    p = sub.add_parser("sim", help="run a program on the functional or the RTL simulator")
    p.add_argument("program", help="program file (.loom) or assembler source (.s)")
    p.add_argument("--config", help="config when assembling source without .config")
    p.add_argument("--input", action="append", default=[], metavar="SEG=FILE.npy",
                   help="fill a segment from a .npy of shape (count, *element shape)")
    p.add_argument("--output", action="append", default=[], metavar="SEG=FILE.npy",
                   help="save a segment after the run")
    p.add_argument("--backend", choices=("functional", "rtl"), default="functional",
                   help="the functional model, or the Verilator model of the RTL (cycles)")
    p.add_argument("--dram", default="zynq7020", help="DRAM preset of the rtl backend")
    p.add_argument("--waves", metavar="FILE.vcd|FILE.fst", help="record a waveform (rtl)")
    p.add_argument("--trace", metavar="FILE.json",
                   help="Perfetto/Chrome trace of unit activity (rtl)")
    p.add_argument("--json", action="store_true", help="print statistics as JSON")
    p.set_defaults(func=cmd_sim)

    p = sub.add_parser("verilog", help="generate the accelerator's Verilog for a config")
    p.add_argument("--config", default="default", help="preset name or TOML/JSON path")
    p.add_argument("-o", "--output", default="build/verilog", help="output folder")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_verilog)

    p = sub.add_parser("synth", help="estimate FPGA resources with Yosys")
    p.add_argument("--config", default="default", help="preset name or TOML/JSON path")
    p.add_argument("--family", choices=("ecp5", "xilinx7"), default="ecp5", help="FPGA family")
    p.add_argument("--lut-multipliers", action="store_true",
                   help="map every multiplier to LUTs instead of DSP blocks")
    p.add_argument("--json", action="store_true", help="print the estimate as JSON")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("boards", help="list the FPGA boards, or show one")
    p.add_argument("name", nargs="?", help="board to show (default: list them all)")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=cmd_boards)

    p = sub.add_parser("demo", help="Verilog, the sample program, and the digits CNN end to end")
    p.add_argument("--backend", choices=("functional", "rtl"), default="rtl",
                   help="simulator for the digits CNN (default: the Verilator RTL model)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample's random data")
    p.add_argument("-o", "--output", default="build/demo", help="folder for the Verilog")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_demo)

    model_commands.register(sub)
    tune_commands.register(sub)
    sweep_commands.register(sub)
    board_commands.register(sub)

    p = sub.add_parser("fuzz", help="differential test: random programs on a backend vs the "
                       "functional simulator")
    p.add_argument("--config", default="small", help="preset name or TOML/JSON path")
    p.add_argument("--programs", type=int, default=100, help="how many programs to run")
    p.add_argument("--seed", type=int, default=0, help="seed of the first program (then +1...)")
    p.add_argument("--size", choices=("small", "medium"), default="small", help="program size")
    p.add_argument("--backend", choices=("amaranth", "rtl"), default="amaranth",
                   help="the Amaranth simulation of the RTL, or the Verilator model (sim.rtl)")
    p.set_defaults(func=cmd_fuzz)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `loom` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (LoomError, OSError) as exc:
        if args.debug:
            raise
        message = str(exc)
        if isinstance(exc, OSError) and exc.strerror:
            message = f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
        print(f"loom: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
