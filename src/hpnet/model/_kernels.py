"""Fused per-tile loops for the attention heads on CPU (float32), compiled once on first use.

The matrix products of a tile stay in MKL (torch.mm); what these loops fuse is the elementwise
work around them, which in torch ops takes a dozen passes over the tile:

- forward: mask = sigmoid(P + a) and, per row and image, sum(mask) and sum(g(mask) * z) (g the
  mask transformation, when one is set), reading the tile once and writing nothing;
- backward: the recomputed mask, dP = (coef z + gs) M (1 - M) written over P, the row sums of dP
  and the direct term dz += coef M, in one pass (training never has a transformation set; with one,
  the backward pass uses torch ops).

The C source below is compiled once (a second or two) with the system C compiler (``$CC``,
default ``cc``) into ``$HPNET_KERNEL_CACHE`` (default ``~/.cache/hpnet``, else a folder in the temp
directory), keyed by a hash of the source, the flags and the CPU, and loaded with ctypes (calls
release the GIL, so the worker threads run them in parallel); :func:`build_and_load` does the
same for the channel heads' loops (:mod:`hpnet.model._channel_kernels`), which share
``MATH_SOURCE``. Where there is no compiler, or with
``HPNET_KERNELS=0``, :func:`library` returns None and the heads use torch ops, which compute the
same thing (to float rounding) about 10-30% slower.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

MATH_SOURCE = r"""
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* 2^t for t in [-126, 126]: t = n + f, n = round(t), |f| <= 1/2, 2^f a degree-5 polynomial
   (weighted least squares, relative error 1.7e-7), n added to the exponent bits: plain arithmetic
   that gcc vectorises, several times cheaper than exp2f. */
static inline float exp2_approx(float t)
{
    t = t > 126.0f ? 126.0f : (t < -126.0f ? -126.0f : t);
    const float n = rintf(t), f = t - n;
    float p = 1.3260922e-3f;
    p = p * f + 9.6701756e-3f;
    p = p * f + 5.5507123e-2f;
    p = p * f + 2.4022225e-1f;
    p = p * f + 6.9314700e-1f;
    p = p * f + 1.0f;
    int32_t bits;
    memcpy(&bits, &p, sizeof bits);
    bits += (int32_t)n << 23;
    memcpy(&p, &bits, sizeof p);
    return p;
}

/* sigmoid(x) = 1 / (1 + 2^(-x log2 e)); 1 or ~1e-38 beyond |x| = 87. */
static inline float sigmoid(float x)
{
    return 1.0f / (1.0f + exp2_approx(-x * 1.44269504088896341f));
}

/* log2(x) for x > 0: x = 2^e m with m in [sqrt(1/2), sqrt(2)), log m = 2 atanh(s),
   s = (m - 1) / (m + 1), |s| < 0.172, by its series to s^9 (relative error ~1e-8). x = 0 (or a
   subnormal) gives about -127, which is all the callers need (2^(n * that) is ~0). */
static inline float log2_approx(float x)
{
    int32_t bits;
    memcpy(&bits, &x, sizeof bits);
    int32_t e = ((bits >> 23) & 255) - 127;
    bits = (bits & 0x007fffff) | 0x3f800000;           /* m in [1, 2) */
    float m;
    memcpy(&m, &bits, sizeof m);
    if (m > 1.41421356f) { m *= 0.5f; e += 1; }
    const float s = (m - 1.0f) / (m + 1.0f), s2 = s * s;
    float q = 1.0f / 9.0f;
    q = q * s2 + 1.0f / 7.0f;
    q = q * s2 + 1.0f / 5.0f;
    q = q * s2 + 1.0f / 3.0f;
    q = q * s2 + 1.0f;
    return (float)e + 2.8853900817779268f * s * q;     /* 2 / ln 2 */
}

/* g(M; n, beta) of Eq. 11-12: with d = 2M - 1, h = 0.5 + sign(d) (0.5 - 0.5 (1 - |d|)^n) and
   g = (1 + beta) h - beta. */
static inline float mask_transform(float m, float n, float beta)
{
    const float d = 2.0f * m - 1.0f, base = 1.0f - fabsf(d);
    const float half = 0.5f - 0.5f * exp2_approx(n * log2_approx(base));
    const float h = 0.5f + (d < 0.0f ? -half : half);
    return (1.0f + beta) * h - beta;
}

"""

HEADS_SOURCE = r"""
#define SPAN 256

/* P: rows x (nb*np) tile, row r = k*C + c; z: row c at z + c*zs; bias: rows.
   out_sum: rows x nb, the sums of M. out_dot: T x rows x nb, the sums of g_t(M) z for the T mask
   transformations t, those of head k = r / C being tn[t*ts + k], tb[t*ts + k]; T = 0 (tn NULL)
   means one output, the identity. Masks are formed once, in spans of SPAN positions, and every
   transformation reads them from there. */
void heads_forward(const float *P, int rows, int nb, int np, int C,
                   const float *z, long zs, const float *bias,
                   int T, const float *tn, const float *tb, long ts,
                   float *out_sum, float *out_dot)
{
    const long cols = (long)nb * np, plane = (long)rows * nb;
    float mb[SPAN];
    for (int r = 0; r < rows; r++) {
        const float *pr = P + (long)r * cols;
        const float *zr = z + (long)(r % C) * zs;
        const float a = bias[r];
        const int k = r / C;
        for (int i = 0; i < nb; i++) {
            const float *pp = pr + (long)i * np, *zp = zr + (long)i * np;
            const long o = (long)r * nb + i;
            float s = 0.0f;
            for (int t = 0; t < (T ? T : 1); t++)
                out_dot[t * plane + o] = 0.0f;
            for (int p0 = 0; p0 < np; p0 += SPAN) {
                const int len = np - p0 < SPAN ? np - p0 : SPAN;
                const float *pq = pp + p0, *zq = zp + p0;
                float d = 0.0f;
                for (int p = 0; p < len; p++) {
                    float m = sigmoid(pq[p] + a);
                    mb[p] = m;
                    s += m;
                    d += m * zq[p];
                }
                if (T == 0) {
                    out_dot[o] += d;
                    continue;
                }
                for (int t = 0; t < T; t++) {
                    const float n = tn[t * ts + k], beta = tb[t * ts + k];
                    float dt = 0.0f;
                    for (int p = 0; p < len; p++)
                        dt += mask_transform(mb[p], n, beta) * zq[p];
                    out_dot[t * plane + o] += dt;
                }
            }
            out_sum[o] = s;
        }
    }
}

/* P: rows x (nb*np), overwritten by dP; coef: rows x nb; gs: (rows / C) x nb;
   dz: row c at dz + c*dzs (accumulated: direct term coef * M); da: rows (accumulated). */
void heads_backward(float *P, int rows, int nb, int np, int C,
                    const float *z, long zs, const float *bias,
                    const float *coef, const float *gs,
                    float *dz, long dzs, float *da)
{
    const long cols = (long)nb * np;
    for (int r = 0; r < rows; r++) {
        float *pr = P + (long)r * cols;
        const int c = r % C, k = r / C;
        const float *zr = z + (long)c * zs;
        float *dzr = dz ? dz + (long)c * dzs : 0;
        const float a = bias[r];
        float rowsum = 0.0f;
        for (int i = 0; i < nb; i++) {
            float *pp = pr + (long)i * np;
            const float *zp = zr + (long)i * np;
            const float ct = coef[(long)r * nb + i], g = gs[(long)k * nb + i];
            float s = 0.0f;
            if (dzr) {
                float *dp = dzr + (long)i * np;
                for (int p = 0; p < np; p++) {
                    float m = sigmoid(pp[p] + a);
                    dp[p] += ct * m;
                    float v = (ct * zp[p] + g) * m * (1.0f - m);
                    pp[p] = v;
                    s += v;
                }
            } else {
                for (int p = 0; p < np; p++) {
                    float m = sigmoid(pp[p] + a);
                    float v = (ct * zp[p] + g) * m * (1.0f - m);
                    pp[p] = v;
                    s += v;
                }
            }
            rowsum += s;
        }
        da[r] += rowsum;
    }
}
"""

SOURCE = MATH_SOURCE + HEADS_SOURCE

# Reassociation lets gcc vectorise the sums and the sigmoid. Not -ffast-math: linking a shared
# library with it (gcc < 13) adds a constructor that turns on flush-to-zero for the whole process.
FLAGS = ["-O3", "-march=native", "-fassociative-math", "-fno-signed-zeros", "-fno-trapping-math",
         "-fno-math-errno", "-fPIC", "-shared"]

class LazyLibrary:
    """A compiled library built on its first use, once per process and thread-safe: ``build()``
    gives it, or None where it cannot be built; nothing is built under HPNET_KERNELS=0.
    ``tried = False`` (tests) makes the next call build again."""

    def __init__(self, build: Callable[[], ctypes.CDLL | None]):
        self.build, self.lock, self.lib, self.tried = build, threading.Lock(), None, False

    def __call__(self) -> ctypes.CDLL | None:
        if self.tried:
            return self.lib
        with self.lock:
            if not self.tried:
                self.lib = self.build() if os.environ.get("HPNET_KERNELS", "1") != "0" else None
                self.tried = True
        return self.lib


# argument types of the attention loops (f: pointer, i: int, l: long)
HEADS_SIGNATURES = {"heads_forward": "fiiiiflfifflff", "heads_backward": "fiiiiflfffflf"}


# the compiled kernels, or None where they cannot be built (or HPNET_KERNELS=0)
library = LazyLibrary(lambda: build_and_load("heads", SOURCE, HEADS_SIGNATURES, "the attention heads"))


def build_and_load(name: str, source: str, signatures: dict[str, str], what: str) -> ctypes.CDLL | None:
    """Compile ``source`` (once per source, flags and CPU: cached) and load it, or None with a
    warning naming ``what`` where no compiler or cache folder works. ``signatures``: each
    function's argument types, one letter each (f pointer, i int, l long), returning nothing."""
    caches = [Path(os.environ["HPNET_KERNEL_CACHE"])] if "HPNET_KERNEL_CACHE" in os.environ else \
        [Path.home() / ".cache" / "hpnet", Path(tempfile.gettempdir()) / f"hpnet-{os.getuid()}"]
    error: Exception | None = None
    for cache in caches:
        try:
            return _load(_build(cache, name, source), signatures)
        except (OSError, subprocess.SubprocessError) as err:
            error = err
    print(f"hpnet: the compiled CPU loops of {what} are unavailable ({error}); "
          "using torch ops (slower, same results)", file=sys.stderr)
    return None


def _cpu_key() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return "".join(line for line in f if line.startswith(("model name", "flags")))[:4000]
    except OSError:
        return platform.processor()


def _build(cache: Path, name: str, source: str) -> Path:
    compiler = os.environ.get("CC", "cc")
    key = hashlib.sha256("\0".join([source, compiler, *FLAGS, _cpu_key()]).encode()).hexdigest()[:16]
    target = cache / f"{name}_{key}.so"
    if target.is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        src, out = Path(tmp) / f"{name}.c", Path(tmp) / f"{name}.so"
        src.write_text(source)
        subprocess.run([compiler, *FLAGS, str(src), "-o", str(out), "-lm"], check=True,
                       capture_output=True, timeout=120)
        os.replace(out, target)  # atomic: concurrent builders leave one complete file
    return target


_TYPES = {"f": ctypes.c_void_p, "i": ctypes.c_int, "l": ctypes.c_long}


def _load(path: Path, signatures: dict[str, str]) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    for name, letters in signatures.items():
        fn = getattr(lib, name)
        fn.argtypes = [_TYPES[c] for c in letters]
        fn.restype = None
    return lib
