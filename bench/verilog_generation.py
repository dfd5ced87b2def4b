"""Benchmark: time and size of the accelerator's Verilog generation for one config (one JSON)."""

import argparse
import json
import tempfile

from hw.verilog import write
from isa.config import load_config


def main() -> None:
    """Generate Verilog for --config and print seconds, bytes and lines as JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="default")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        summary = write(load_config(args.config), out)
    del summary["verilog"]
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
