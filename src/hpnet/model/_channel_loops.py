"""The C source of the ``channel`` heads' loops (compiled by :mod:`hpnet.model._channel_kernels`).

``BODY``: the loops, written once for ``real`` (float or double), each function named through
``FN``; ``EXP2``, ``LOG2``, ``FMA``, ``ABS`` and ``AVX512`` are defined per type. Where AVX512 is
1 (float32 on a CPU with AVX-512) the hot loops call their 16-lane versions in
:mod:`hpnet.model._channel_vector` instead.
"""

# the loops, written once for `real`; FN names each function after its type
BODY = r"""
/* The three column-shifted copies of nc planes of one image (z: strides sc, sh, sw) with a zero
   row above and below: S_j[y W + x] = z[y - 1][x + j - 1] (0 outside), y in [0, H + 2), the
   copies of channel c at S + 3 c (H + 2) W. Then the 3x3 correlation at flat position
   p = y W + x is sum_ij w[3i + j] S_j[p + i W]: unit-stride loads. Channels-last features are
   read a position's channels at a time, so each cache line of z is read once. */
static void FN(shifted_copies)(const real *z, long sc, long sh, long sw, int nc, int H, int W, real *S)
{
    const long plane = (long)(H + 2) * W;
    for (int q = 0; q < 3 * nc; q++) {                      /* the zero rows above and below */
        memset(S + q * plane, 0, W * sizeof(real));
        memset(S + q * plane + (long)(H + 1) * W, 0, W * sizeof(real));
    }
    if (sc < sw)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                __builtin_prefetch(z + y * sh + (x + 16) * sw);
                for (int c = 0; c < nc; c++)
                    S[3 * plane * c + plane + (long)(y + 1) * W + x] = z[c * sc + y * sh + x * sw];
            }
    else
        for (int c = 0; c < nc; c++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++)
                    S[3 * plane * c + plane + (long)(y + 1) * W + x] = z[c * sc + y * sh + x * sw];
    for (int c = 0; c < nc; c++)
        for (int y = 1; y <= H; y++) {
            real *r0 = S + 3 * plane * c + (long)y * W, *r1 = r0 + plane, *r2 = r1 + plane;
            for (int x = 0; x + 1 < W; x++) {
                r0[x + 1] = r1[x];
                r2[x] = r1[x + 1];
            }
            r0[0] = 0;
            r2[W - 1] = 0;
        }
}

/* Masks at n flat positions from p0: m = sigmoid(b + sum_ij w_ij S_j[p + i W]), with wl, bl the
   weights and bias times -log2(e) (sigmoid(x) = 1 / (1 + 2^(-x log2 e))). */
static inline void FN(masks)(const real *S, long plane, int W, long p0, long n, const real *wl,
                             real bl, real *m)
{
    const real *s0 = S + p0, *s1 = s0 + plane, *s2 = s1 + plane;
    const real *t0 = s0 + W, *t1 = s1 + W, *t2 = s2 + W, *u0 = t0 + W, *u1 = t1 + W, *u2 = t2 + W;
#if AVX512
    masks16(S, plane, W, p0, n, wl, bl, m);
    return;
#endif
    for (long i = 0; i < n; i++) {
        real t = FMA(wl[0], s0[i], bl);
        t = FMA(wl[1], s1[i], t);
        t = FMA(wl[2], s2[i], t);
        t = FMA(wl[3], t0[i], t);
        t = FMA(wl[4], t1[i], t);
        t = FMA(wl[5], t2[i], t);
        t = FMA(wl[6], u0[i], t);
        t = FMA(wl[7], u1[i], t);
        t = FMA(wl[8], u2[i], t);
        m[i] = (real)1 / ((real)1 + EXP2(t));
    }
}

/* The sums of the masks at n positions from p0 and of the masks times z (zs at p0): the
   forward without a transformation, in one pass. */
static inline void FN(mask_sums)(const real *S, long plane, int W, long p0, long n, const real *wl,
                                 real bl, const real *zs, real *sum, real *dot)
{
    const real *s0 = S + p0, *s1 = s0 + plane, *s2 = s1 + plane;
    const real *t0 = s0 + W, *t1 = s1 + W, *t2 = s2 + W, *u0 = t0 + W, *u1 = t1 + W, *u2 = t2 + W;
#if AVX512
    mask_sums16(S, plane, W, p0, n, wl, bl, zs, sum, dot);
    return;
#endif
    real s = 0, d = 0;
    for (long i = 0; i < n; i++) {
        real t = FMA(wl[0], s0[i], bl);
        t = FMA(wl[1], s1[i], t);
        t = FMA(wl[2], s2[i], t);
        t = FMA(wl[3], t0[i], t);
        t = FMA(wl[4], t1[i], t);
        t = FMA(wl[5], t2[i], t);
        t = FMA(wl[6], u0[i], t);
        t = FMA(wl[7], u1[i], t);
        t = FMA(wl[8], u2[i], t);
        const real m = (real)1 / ((real)1 + EXP2(t));
        s += m;
        d += m * zs[i];
    }
    *sum += s;
    *dot += d;
}

/* g(M; n, beta) of Eq. 11-12: with d = 2M - 1 and base = 1 - |d|,
   h = 0.5 + sign(d) (0.5 - 0.5 base^n), g = (1 + beta) h - beta. */
static inline real FN(tone)(real m, real n, real beta)
{
    const real d = 2 * m - 1, half = (real)0.5 - (real)0.5 * EXP2(n * LOG2(1 - ABS(d)));
    return (1 + beta) * (d < 0 ? (real)0.5 - half : (real)0.5 + half) - beta;
}

/* dg/dM = (1 + beta) n base^(n - 1). */
static inline real FN(tone_slope)(real m, real n, real beta)
{
    return (1 + beta) * n * EXP2((n - 1) * LOG2(1 - ABS(2 * m - 1)));
}

/* Forward of a tile: images 0..nb-1 and channels 0..nc-1 of z (strides sb, sc, sh, sw; the
   pointers are at the tile's first), every head k < K. D (K, C, 9) and bias (K, C) at the
   tile's first channel, C their channel count. Writes msum[i ob + k C + j] = sum_p M and
   out[t ot + i ob + k C + j] = sum_p g_t(M) z for the T transformations t (tn, tb: (T, K);
   T = 0: one output, the identity). */
void FN(channel_forward)(const real *z, long sb, long sc, long sh, long sw, int nb, int nc,
                         int H, int W, int R, const real *D, const real *bias, int K, int C,
                         int T, const real *tn, const real *tb,
                         real *msum, real *out, long ob, long ot, real *work)
{
    const long plane = (long)(H + 2) * W;
    const int outs = T ? T : 1;
    real *m = work + 3 * plane * nc;
    const real L = (real)-1.44269504088896341;
    for (int i = 0; i < nb; i++) {
        FN(shifted_copies)(z + i * sb, sc, sh, sw, nc, H, W, work);
        for (int j = 0; j < nc; j++) {
            const real *S = work + 3 * plane * j;
            for (int k = 0; k < K; k++) {
                msum[i * ob + (long)k * C + j] = 0;
                for (int t = 0; t < outs; t++)
                    out[t * ot + i * ob + (long)k * C + j] = 0;
            }
            for (int r0 = 0; r0 < H; r0 += R) {          /* a strip of rows stays in cache for every head */
                const long p0 = (long)r0 * W, n = (long)((r0 + R < H ? R : H - r0)) * W;
                const real *zs = S + plane + p0 + W;     /* z itself: S_1 one row down */
                for (int k = 0; k < K; k++) {
                    const real *w = D + ((long)k * C + j) * 9;
                    real wl[9];
                    for (int q = 0; q < 9; q++)
                        wl[q] = w[q] * L;
                    const long o = i * ob + (long)k * C + j;
                    if (T == 0) {
                        FN(mask_sums)(S, plane, W, p0, n, wl, bias[(long)k * C + j] * L, zs, msum + o, out + o);
                        continue;
                    }
                    FN(masks)(S, plane, W, p0, n, wl, bias[(long)k * C + j] * L, m);
                    real s = 0;
                    for (long q = 0; q < n; q++)
                        s += m[q];
                    msum[o] += s;
                    for (int t = 0; t < T; t++) {
                        const real nk = tn[(long)t * K + k], bk = tb[(long)t * K + k];
                        real dt = 0;
                        for (long q = 0; q < n; q++)
                            dt += FN(tone)(m[q], nk, bk) * zs[q];
                        out[t * ot + o] += dt;
                    }
                }
            }
        }
    }
}

/* dP = dL/dx at n positions, over the masks m (written in their place): dM = ct z g'(M) + g
   with the transformation (tr), ct z + g without; dP = dM M (1 - M). With dz, also the direct
   term dz += ct g(M). */
static inline void FN(mask_grads)(real *m, const real *z, long n, real ct, real g, int tr, real nk,
                                  real bk, real *dz)
{
    if (dz && tr)
        for (long q = 0; q < n; q++)
            dz[q] += ct * FN(tone)(m[q], nk, bk);
    else if (dz)
        for (long q = 0; q < n; q++)
            dz[q] += ct * m[q];
    if (tr)
        for (long q = 0; q < n; q++)
            m[q] = (ct * z[q] * FN(tone_slope)(m[q], nk, bk) + g) * m[q] * (1 - m[q]);
    else
        for (long q = 0; q < n; q++)
            m[q] = (ct * z[q] + g) * m[q] * (1 - m[q]);
}

/* The gradients of a head's 3x3 filter and bias from dP at n positions from p0: dD_ij +=
   sum_p dP S_j[p + i W], da += sum_p dP. */
static inline void FN(filter_grads)(const real *dp, const real *S, long plane, int W, long p0,
                                    long n, real *dD, real *da)
{
    const real *s0 = S + p0, *s1 = s0 + plane, *s2 = s1 + plane;
    const real *t0 = s0 + W, *t1 = s1 + W, *t2 = s2 + W, *u0 = t0 + W, *u1 = t1 + W, *u2 = t2 + W;
    real a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0, a8 = 0, sum = 0;
    for (long q = 0; q < n; q++) {
        const real v = dp[q];
        sum += v;
        a0 += v * s0[q]; a1 += v * s1[q]; a2 += v * s2[q];
        a3 += v * t0[q]; a4 += v * t1[q]; a5 += v * t2[q];
        a6 += v * u0[q]; a7 += v * u1[q]; a8 += v * u2[q];
    }
    dD[0] += a0; dD[1] += a1; dD[2] += a2; dD[3] += a3; dD[4] += a4;
    dD[5] += a5; dD[6] += a6; dD[7] += a7; dD[8] += a8;
    *da += sum;
}

/* dz += the transposed correlation of dP with w at n positions: Q holds rows r0 - 1 .. of dP
   as three column-shifted copies (Q_j[y W + x] = dP[r0 - 1 + y][x + 1 - j], qplane apart), so
   dz[p] = sum_ij w_ij Q_j[p + (2 - i) W]. */
static inline void FN(transposed)(const real *Q, long qplane, int W, long n, const real *w, real *dz)
{
    const real *a0 = Q, *a1 = a0 + qplane, *a2 = a1 + qplane;
    const real *b0 = a0 + W, *b1 = a1 + W, *b2 = a2 + W, *c0 = b0 + W, *c1 = b1 + W, *c2 = b2 + W;
    for (long p = 0; p < n; p++)
        dz[p] += w[0] * c0[p] + w[1] * c1[p] + w[2] * c2[p] + w[3] * b0[p] + w[4] * b1[p]
                 + w[5] * b2[p] + w[6] * a0[p] + w[7] * a1[p] + w[8] * a2[p];
}

/* Q_0 and Q_2 from Q_1 (rows of W): shifted one column left and right, zero at the edge. */
static void FN(shift_columns)(real *Q, long qplane, int rows, int W)
{
    for (int y = 0; y < rows; y++) {
        real *q0 = Q + (long)y * W, *q1 = q0 + qplane, *q2 = q1 + qplane;
        for (int x = 0; x + 1 < W; x++) {
            q0[x] = q1[x + 1];
            q2[x + 1] = q1[x];
        }
        q0[W - 1] = 0;
        q2[0] = 0;
    }
}

/* Backward of a tile (the same layout as channel_forward; T is 0 or 1, the model's own
   transformation). coef[i cb + k C + j] = dL/dpooled / HW, gs[i gb + k] = dL/dmsum. Adds the
   filter and bias gradients into dD (K, C, 9) and da (K, C) at the tile's first channel and,
   when dz is not NULL, writes dL/dz of the tile's planes (strides dsb, dsc, dsh, dsw). Each
   strip of rows recomputes its masks with one row either side, which the transposed
   correlation reads. */
void FN(channel_backward)(const real *z, long sb, long sc, long sh, long sw, int nb, int nc,
                          int H, int W, int R, const real *D, const real *bias, int K, int C,
                          int T, const real *tn, const real *tb,
                          const real *coef, long cb, const real *gs, long gb,
                          real *dz, long dsb, long dsc, long dsh, long dsw,
                          real *dD, real *da, real *work)
{
    const long plane = (long)(H + 2) * W;
    const long qplane = (long)(R + 2) * W;
    real *dzp = work + 3 * plane * nc, *Q = dzp + (long)H * W, *Q1 = Q + qplane;
    const real L = (real)-1.44269504088896341;
    for (int i = 0; i < nb; i++) {
        FN(shifted_copies)(z + i * sb, sc, sh, sw, nc, H, W, work);
        for (int j = 0; j < nc; j++) {
            const real *S = work + 3 * plane * j, *zs = S + plane + W;  /* z itself: S_1 one row down */
            if (dz)
                memset(dzp, 0, (long)H * W * sizeof(real));
            for (int r0 = 0; r0 < H; r0 += R) {
                /* rows h0 .. h1 - 1: the strip and, for dz, one row either side */
                const int r1 = r0 + R < H ? r0 + R : H, h0 = dz && r0 > 0 ? r0 - 1 : r0;
                const int h1 = dz && r1 < H ? r1 + 1 : r1;
                const long n = (long)(r1 - r0) * W;
                if (r0 == 0)                                  /* rows outside the image: dP = 0 */
                    memset(Q1, 0, W * sizeof(real));
                if (r1 == H)
                    memset(Q1 + (long)(r1 - r0 + 1) * W, 0, W * sizeof(real));
                for (int k = 0; k < K; k++) {
                    const long kc = (long)k * C + j;
                    const real *w = D + kc * 9, ct = coef[i * cb + kc], g = gs[i * gb + k];
                    const real nk = T ? tn[k] : 1, bk = T ? tb[k] : 0;
                    real wl[9];
                    for (int q = 0; q < 9; q++)
                        wl[q] = w[q] * L;
                    real *dp = Q1 + (long)(h0 - r0 + 1) * W;
                    FN(masks)(S, plane, W, (long)h0 * W, (long)(h1 - h0) * W, wl, bias[kc] * L, dp);
                    real *mid = dp + (long)(r0 - h0) * W, *dzs = dz ? dzp + (long)r0 * W : 0;
                    if (h0 < r0)
                        FN(mask_grads)(dp, zs + (long)h0 * W, W, ct, g, T, nk, bk, 0);
                    if (h1 > r1)
                        FN(mask_grads)(mid + n, zs + (long)r1 * W, W, ct, g, T, nk, bk, 0);
#if AVX512
                    if (!T) {
                        grads16(S, plane, W, (long)r0 * W, n, zs + (long)r0 * W, mid, dzs, ct, g, dD + kc * 9, da + kc);
                        if (dz)
                            transposed16(Q1, W, r1 - r0, w, dzs);
                        continue;
                    }
#endif
                    FN(mask_grads)(mid, zs + (long)r0 * W, n, ct, g, T, nk, bk, dzs);
                    FN(filter_grads)(mid, S, plane, W, (long)r0 * W, n, dD + kc * 9, da + kc);
                    if (dz) {
                        FN(shift_columns)(Q, qplane, r1 - r0 + 2, W);
                        FN(transposed)(Q, qplane, W, n, w, dzs);
                    }
                }
            }
            if (dz) {
                real *dzc = dz + i * dsb + j * dsc;
                for (int y = 0; y < H; y++)
                    for (int x = 0; x < W; x++)
                        dzc[y * dsh + x * dsw] = dzp[(long)y * W + x];
            }
        }
    }
}
"""
