"""Exact integer semantics of the tensor ALU and the GEMM core, shared by every model of them.

All lanes are two's-complement integers. ACC lanes are `acc_bits` wide, OUT lanes `out_bits`.

GEMM (per micro-op execution, indices as in `docs/isa.md`)::

    ACC[a][b][o] = wrap_acc(ACC[a][b][o] + sum_i INP[x][b][i] * WGT[w][o][i])   (reset=0)
    ACC[a][b][o] = 0                                                           (reset=1)
    OUT[a][b][o] = wrap_out(ACC[a][b][o])

INP and WGT lanes are signed `inp_bits`/`wgt_bits` values; the sum is exact and then wraps to
`acc_bits` (wrapping is modular, so the order of accumulation never matters).

ALU (per micro-op execution, lane by lane; ``y`` is the sign-extended 16-bit immediate when
use_imm=1, else ACC[src]; ``imm`` is the instruction's immediate field)::

    ACC[dst] = alu(op, ACC[dst], y);  OUT[dst] = wrap_out(ACC[dst])

=====  ==================================================================================
MIN    signed minimum
MAX    signed maximum
ADD    x + y, wrapped to acc_bits
MUL    x * m, wrapped to acc_bits: m = y[15:0] as a signed 16-bit value (as MULR's; an
       immediate is 16 bits anyway, an ACC source's higher bits are ignored)
SHR    arithmetic shift: n = y clamped to [-acc_bits, acc_bits]; n >= 0: x >> n (sign fill);
       n < 0: x << -n wrapped to acc_bits
RSHR   rounding shift right: n as for SHR; n > 0: (x + 2**(n-1)) >> n computed without
       overflow (rounds half up, toward +inf); n <= 0: as SHR
MOV    y (a copy from ACC[src], or a broadcast of the immediate)
MULR   multiply, then rounding shift: m = y[15:0] as a signed 16-bit value (use_imm=0: y is
       ACC[src]), n = imm in [0, acc_bits + 15]; the product x * m is exact (acc_bits + 16
       bits), then rounded as RSHR by n (n = 0: unchanged) and wrapped to acc_bits
CLIP   min(max(x, lo), hi) with lo = y[7:0] and hi = y[15:8], each a signed byte (use_imm=1:
       y is the immediate, `clip_imm` encodes it); lo > hi gives hi
=====  ==================================================================================

Requantization is MULR by the multiplier row, then CLIP (or MAX and MIN when the bounds do not
fit a byte); there is no saturation anywhere.
Each micro-op execution completes before the next one reads, so an instruction whose reads
depend on its own earlier writes sees them (the hardware must stall or forward to match).
"""

from __future__ import annotations

import numpy as np

from isa.formats import AluOp
from isa.packing import wrap

MULR_MULT_BITS = 16  # MUL and MULR multiply by the low 16 bits of y (their ACC source), signed


def mulr_max_shift(acc_bits: int) -> int:
    """The largest MULR shift: one that can reduce any exact product to its sign."""
    return acc_bits + MULR_MULT_BITS - 1


def sign_extend(value, bits: int):
    """The low `bits` bits of an integer or int64 array as a signed value."""
    return wrap(np.asarray(value, dtype=np.int64) & ((1 << bits) - 1), bits)


def clip_imm(lo: int, hi: int) -> int:
    """The CLIP immediate of bounds lo and hi (each in [-128, 127]) as a signed 16-bit value."""
    if not (-128 <= lo <= 127 and -128 <= hi <= 127):
        raise ValueError(f"CLIP bounds must be signed bytes, not ({lo}, {hi})")
    return int(sign_extend(((hi & 0xFF) << 8) | (lo & 0xFF), 16))


def clip_bounds(imm) -> tuple[int, int]:
    """The (lo, hi) bounds a CLIP immediate encodes."""
    return int(sign_extend(imm, 8)), int(sign_extend(np.int64(imm) >> 8, 8))


def rshr(x: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Round half up of x / 2**n for n >= 0, exact for any int64 x + 2**(n-1) (n <= 62)."""
    bias = np.where(n > 0, np.int64(1) << np.maximum(n - 1, 0), 0)
    return (x + bias) >> n


def alu(op: AluOp, x: np.ndarray, y: np.ndarray, acc_bits: int, imm: int = 0) -> np.ndarray:
    """One ALU op lane-wise on int64 arrays wrapped to acc_bits; imm is MULR's shift."""
    if op == AluOp.MULR:
        if not 0 <= imm <= mulr_max_shift(acc_bits):
            raise ValueError(f"MULR shift {imm} is outside [0, {mulr_max_shift(acc_bits)}]")
        product = x * sign_extend(y, MULR_MULT_BITS)
        return wrap(rshr(product, np.int64(imm)), acc_bits)
    if op == AluOp.CLIP:
        lo, hi = sign_extend(y, 8), sign_extend(np.asarray(y, dtype=np.int64) >> 8, 8)
        return np.minimum(np.maximum(x, lo), hi)
    if op == AluOp.MIN:
        return np.minimum(x, y)
    if op == AluOp.MAX:
        return np.maximum(x, y)
    if op == AluOp.ADD:
        return wrap(x + y, acc_bits)
    if op == AluOp.MUL:
        return wrap(x * sign_extend(y, MULR_MULT_BITS), acc_bits)
    if op == AluOp.MOV:
        return np.broadcast_to(y, np.broadcast_shapes(np.shape(x), np.shape(y))).copy()
    if op in (AluOp.SHR, AluOp.RSHR):
        n = np.clip(y, -acc_bits, acc_bits)
        right = np.maximum(n, 0)
        left = wrap(x << np.maximum(-n, 0), acc_bits)
        shifted = rshr(x, right) if op == AluOp.RSHR else x >> right
        return np.where(n < 0, left, shifted)
    raise ValueError(f"unknown ALU op {op}")


def gemm(inp: np.ndarray, wgt: np.ndarray) -> np.ndarray:
    """Exact products of (n, batch, block_in) inputs and (n, block_out, block_in) weights."""
    return np.einsum("nbi,noi->nbo", inp, wgt)
