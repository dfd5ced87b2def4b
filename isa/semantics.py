"""Exact integer semantics of the tensor ALU and the GEMM core, shared by every model of them.

All lanes are two's-complement integers. ACC lanes are `acc_bits` wide, OUT lanes `out_bits`.

GEMM (per micro-op execution, indices as in `docs/isa.md`)::

    ACC[a][b][o] = wrap_acc(ACC[a][b][o] + sum_i INP[x][b][i] * WGT[w][o][i])   (reset=0)
    ACC[a][b][o] = 0                                                           (reset=1)
    OUT[a][b][o] = wrap_out(ACC[a][b][o])

INP and WGT lanes are signed `inp_bits`/`wgt_bits` values; the sum is exact and then wraps to
`acc_bits` (wrapping is modular, so the order of accumulation never matters).

ALU (per micro-op execution, lane by lane; ``y`` is the sign-extended 16-bit immediate when
use_imm=1, else ACC[src])::

    ACC[dst] = alu(op, ACC[dst], y);  OUT[dst] = wrap_out(ACC[dst])

=====  ==================================================================================
MIN    signed minimum
MAX    signed maximum
ADD    x + y, wrapped to acc_bits
MUL    x * y, wrapped to acc_bits (the compiler keeps products in range)
SHR    arithmetic shift: n = y clamped to [-acc_bits, acc_bits]; n >= 0: x >> n (sign fill);
       n < 0: x << -n wrapped to acc_bits
RSHR   rounding shift right: n as for SHR; n > 0: (x + 2**(n-1)) >> n computed without
       overflow (rounds half up, toward +inf); n <= 0: as SHR
MOV    y (a copy from ACC[src], or a broadcast of the immediate)
=====  ==================================================================================

Requantization uses MUL, RSHR, then MIN and MAX for the clip; there is no saturation anywhere.
Each micro-op execution completes before the next one reads, so an instruction whose reads
depend on its own earlier writes sees them (the hardware must stall or forward to match).
"""

from __future__ import annotations

import numpy as np

from isa.formats import AluOp
from isa.packing import wrap


def alu(op: AluOp, x: np.ndarray, y: np.ndarray, acc_bits: int) -> np.ndarray:
    """Apply one ALU op lane-wise to int64 arrays already wrapped to acc_bits."""
    if op == AluOp.MIN:
        return np.minimum(x, y)
    if op == AluOp.MAX:
        return np.maximum(x, y)
    if op == AluOp.ADD:
        return wrap(x + y, acc_bits)
    if op == AluOp.MUL:
        return wrap(x * y, acc_bits)
    if op == AluOp.MOV:
        return np.broadcast_to(y, np.broadcast_shapes(np.shape(x), np.shape(y))).copy()
    if op in (AluOp.SHR, AluOp.RSHR):
        n = np.clip(y, -acc_bits, acc_bits)
        right = np.maximum(n, 0)
        left = wrap(x << np.maximum(-n, 0), acc_bits)
        if op == AluOp.RSHR:
            bias = np.where(right > 0, np.int64(1) << np.maximum(right - 1, 0), 0)
            shifted = (x + bias) >> right
        else:
            shifted = x >> right
        return np.where(n < 0, left, shifted)
    raise ValueError(f"unknown ALU op {op}")


def gemm(inp: np.ndarray, wgt: np.ndarray) -> np.ndarray:
    """Exact products of (n, batch, block_in) inputs and (n, block_out, block_in) weights."""
    return np.einsum("nbi,noi->nbo", inp, wgt)
