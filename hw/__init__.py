"""Amaranth HDL for the accelerator (built in the RTL issue); imports `isa` only."""
