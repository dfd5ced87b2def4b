"""The AXI models of the accelerator's neighbours, which live in `sim.amaranth_backend`."""

from sim.amaranth_backend import (
    INCR,
    OKAY,
    PAGE_BYTES,
    SLVERR,
    AxiLiteMaster,
    AxiMemory,
    AxiProtocolError,
    simulate,
)

__all__ = [
    "INCR",
    "OKAY",
    "PAGE_BYTES",
    "SLVERR",
    "AxiLiteMaster",
    "AxiMemory",
    "AxiProtocolError",
    "simulate",
]
