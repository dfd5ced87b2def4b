"""`loom pnr`, `loom bitstream` and `loom zynq`: FPGA place and route, bitstreams, Zynq wrapper."""

from __future__ import annotations

import json

from isa.config import load_config

DEFAULT_TIMEOUT_S = 1800


def _board_and_config(args):
    """The board of `--board` and `--config` (default: the board's default config)."""
    from boards.boards import load_board

    board = load_board(args.board)
    return board, board.default_config if args.config is None else load_config(args.config)


def cmd_pnr(args) -> int:
    """Place and route a config on an ECP5 board; print Fmax, resources and peak MAC/s."""
    from boards.pnr import place_and_route

    board, cfg = _board_and_config(args)
    result = place_and_route(cfg, board, timeout_s=args.timeout, use_dsp=not args.lut_multipliers,
                             jobs=args.jobs)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(result.summary())
        path = result.critical_path
        print(f"peak {result.peak_macs_per_s / 1e9:.2f} GMAC/s ({cfg.macs_per_cycle} MACs/cycle "
              f"x {result.fmax_mhz:.1f} MHz)")
        print(f"slowest path: {path.get('from')} -> {path.get('to')}")
    return 0


def cmd_bitstream(args) -> int:
    """Build a board's bitstream of the accelerator with a UART host bridge."""
    from boards.bitstream import build_bitstream

    board, cfg = _board_and_config(args)
    report = build_bitstream(board, args.output, timeout_s=args.timeout, cfg=cfg,
                             use_dsp=not args.lut_multipliers, clock_mhz=args.clock_mhz)
    if args.json:
        print(json.dumps(report))
    else:
        r = report["resources"]
        print(f"{report['bitstream']}: {report['config']} on {board.name}, Fmax "
              f"{report['fmax_mhz']:.1f} MHz ({report['clock_mhz']:g} MHz clock), {r['lut']} LUT4, "
              f"{r['ff']} FF, {r['dsp']} MULT18X18D, {r['bram']} DP16KD, "
              f"{report['seconds']['total']:.0f} s")
    return 0 if report["met"] else 1


def cmd_zynq(args) -> int:
    """Write the accelerator and its Vivado block-design wrapper for a Zynq board."""
    from hw.zynq import write_zynq

    _, cfg = _board_and_config(args)
    summary = write_zynq(cfg, args.output)
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{summary['verilog']}: {summary['top']} around loom_accel for "
              f"{summary['config_name']} (ID {summary['config_id']}); see docs/boards.md")
    return 0


def register(sub) -> None:
    """Add the pnr, bitstream and zynq subcommands to the CLI's subparsers."""
    p = sub.add_parser("pnr", help="place and route on an ECP5 board: post-route Fmax, resources")
    p.add_argument("--board", default="ulx3s_85f", help="an ECP5 board (see `loom boards`)")
    p.add_argument("--config", help="preset name or TOML/JSON path (default: the board's)")
    p.add_argument("--lut-multipliers", action="store_true",
                   help="map multipliers to LUTs instead of DSPs (synth_ecp5 -nodsp)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds")
    p.add_argument("--jobs", type=int, default=1, help="nextpnr threads")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_pnr)

    p = sub.add_parser("bitstream", help="build an FPGA bitstream with a UART host bridge")
    p.add_argument("--board", default="ulx3s_85f", help="board with a bitstream top (ulx3s_85f)")
    p.add_argument("--config", help="preset name or TOML/JSON path (default: the board's)")
    p.add_argument("--lut-multipliers", action="store_true", help="synth_ecp5 -nodsp")
    p.add_argument("--clock-mhz", type=float, default=25,
                   help="design clock; other than the 25 MHz oscillator adds a PLL")
    p.add_argument("-o", "--output", default="build/bitstream", help="output folder")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_bitstream)

    p = sub.add_parser("zynq", help="Verilog and a Vivado block-design wrapper for a Zynq board")
    p.add_argument("--board", default="pynq_z1", help="board whose default config to use")
    p.add_argument("--config", help="preset name or TOML/JSON path (default: the board's)")
    p.add_argument("-o", "--output", default="build/zynq", help="output folder")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_zynq)
