"""Compiled CPU loops of the ``channel`` heads (float32 and float64), built once on first use.

For head k, image b and channel c the mask is M = sigmoid(x), x = D_kc * z_c + a_kc, the 3x3
correlation of channel c alone (zero padding) plus a bias, and the heads need only sums of it:

    pooled[b, k, c] = sum_p g(M) z_c / HW        msum[b, k, c] = sum_p M

These loops compute a tile, a block of images x a block of channels, whole planes and every head
(so the 3x3 shifts stay inside one plane), without the (B, K, C, H, W) mask tensor:

- each plane is copied once into three column-shifted copies with a zero row above and below,
  so the correlation at every position is nine unit-stride loads that the compiler vectorises;
- rows are walked in strips (``R`` rows) that stay in the caches while every head reads them: the
  correlation, the sigmoid and the sums are one pass, nothing is written;
- backward recomputes each strip's masks (with one row either side, for dz) and applies the
  hand-derived gradients (ct = dL/dpooled / HW, gs = dL/dmsum):
  dM = ct z g'(M) + gs, dx = dM M (1 - M), dD_kc += sum_p dx (shifted z), da_kc += sum_p dx,
  dz_c = sum_k (ct g(M) + the transposed correlation of dx with D_kc).

The float32 loops use the attention loops' fast 2^x and log2 (relative error ~2e-7); the float64
ones use libm's, so that gradcheck can hold the same code to float64 precision. Built and cached
by :func:`hpnet.model._kernels.build_and_load`; :func:`library` is None where that fails (or
with ``HPNET_KERNELS=0``) and the heads then use torch ops.
"""
from __future__ import annotations

from ._channel_loops import BODY
from ._channel_vector import VECTOR
from ._kernels import MATH_SOURCE, LazyLibrary, build_and_load

PRELUDE = r"""
#if defined(__x86_64__) && defined(__AVX512F__) && defined(__AVX512DQ__)
#pragma GCC target("prefer-vector-width=512")
#include <immintrin.h>
#define AVX512 1
#else
#define AVX512 0
#endif
"""

FLOAT32 = """
#define real float
#define FN(name) name##_f32
#define EXP2 exp2_approx
#define LOG2 log2_approx
#define FMA fmaf
#define ABS fabsf
"""

FLOAT64 = """
#undef real
#undef FN
#undef EXP2
#undef LOG2
#undef FMA
#undef ABS
#undef AVX512
#define AVX512 0
#define real double
#define FN(name) name##_f64
#define EXP2 exp2
#define LOG2 log2
#define FMA fma
#define ABS fabs
"""

SOURCE = MATH_SOURCE + PRELUDE + VECTOR + FLOAT32 + BODY + FLOAT64 + BODY

# argument types (f: pointer, i: int, l: long), for both suffixes
_FORWARD, _BACKWARD = "flllliiiiiffiiiffffllf", "flllliiiiiffiiiffflflfllllfff"
SIGNATURES = {f"channel_{what}_{t}": args for t in ("f32", "f64")
              for what, args in (("forward", _FORWARD), ("backward", _BACKWARD))}

# the compiled loops, or None where they cannot be built (or HPNET_KERNELS=0); SOURCE is read when
# they are built
library = LazyLibrary(lambda: build_and_load("channel", SOURCE, SIGNATURES, "the channel heads"))


def work_size(H: int, W: int, channels: int, rows: int) -> int:
    """Reals of work space one thread needs for tiles of ``channels`` planes of H x W walked in
    strips of ``rows``: the planes' shifted copies, dz of a plane, the shifted copies of a strip's dx."""
    return 3 * (H + 2) * W * channels + H * W + 3 * (rows + 2) * W
