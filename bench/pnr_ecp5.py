"""Benchmark: post-route Fmax, utilisation and peak int8 MAC/s of a config on an ECP5 board (JSON).

Run from the project root: `python bench/pnr_ecp5.py --board ulx3s_85f [--config small]
[--lut-multipliers] [--timeout 1800]`. Results are cached (boards.pnr): a repeat is instant.
"""

import argparse
import json

from boards.boards import load_board
from boards.pnr import place_and_route
from isa.config import load_config
from isa.errors import ToolError


def main() -> None:
    """Place and route one config and print one JSON object (or its error)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--board", default="ulx3s_85f")
    parser.add_argument("--config", help="preset or file (default: the board's default config)")
    parser.add_argument("--lut-multipliers", action="store_true", help="synth_ecp5 -nodsp")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds")
    args = parser.parse_args()
    board = load_board(args.board)
    cfg = board.default_config if args.config is None else load_config(args.config)
    point = {"board": board.name, "config": cfg.name, "use_dsp": not args.lut_multipliers}
    try:
        result = place_and_route(cfg, board, timeout_s=args.timeout,
                                 use_dsp=not args.lut_multipliers)
    except ToolError as exc:
        print(json.dumps(point | {"error": str(exc)}))
        return
    report = result.to_dict()
    print(json.dumps(point | {key: report[key] for key in (
        "fmax_mhz", "target_mhz", "met", "resources", "critical_path", "seconds", "cached",
        "macs_per_cycle", "peak_macs_per_s", "tools")}))


if __name__ == "__main__":
    main()
