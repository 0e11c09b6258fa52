"""The C source of the 16-lane AVX-512 versions of the ``channel`` heads' float32 loops.

:mod:`hpnet.model._channel_loops` calls them where the compiler targets AVX-512 F and DQ (``AVX512`` 1):
the masks, their sums, the backward's gradients and the transposed correlation, written with
intrinsics so that 2^x is one ``scalef`` (no clamping, NaN kept) and the column shifts of the
transposed correlation are masked loads; elsewhere the portable loops, which the compiler
vectorises, compute the same.
"""

VECTOR = r"""
#if AVX512
/* 16-lane versions of the float loops for AVX-512 (BODY calls them where AVX512 is 1). Loops run
   whole vectors with plain loads and one masked vector for the tail. */

/* 1 / (1 + 2^t): 2^t = 2^round(t) p(t - round(t)), t - round(t) in one instruction (reduce) and
   scalef applying 2^round(t) (it saturates to 0 and inf by itself, and keeps NaN). */
static inline __m512 sigmoid16(__m512 t)
{
    const __m512 f = _mm512_reduce_ps(t, _MM_FROUND_TO_NEAREST_INT), n = _mm512_sub_ps(t, f);
    const __m512 one = _mm512_set1_ps(1.0f);
    __m512 p = _mm512_set1_ps(1.3260922e-3f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6701756e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5507123e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022225e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314700e-1f));
    p = _mm512_fmadd_ps(p, f, one);
    return _mm512_div_ps(one, _mm512_add_ps(one, _mm512_scalef_ps(p, n)));
}

static inline __mmask16 lanes(long left)
{
    return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
}

/* The nine taps of the 3x3 correlation at flat position p0 (see shifted_copies): row 3i + j is
   S_j one i rows down; and the nine weights, broadcast. */
static inline void taps16(const float *S, long plane, int W, long p0, const float *wl,
                          const float **rows, __m512 *w)
{
    for (int q = 0; q < 9; q++) {
        rows[q] = S + (q % 3) * plane + p0 + (long)(q / 3) * W;
        w[q] = _mm512_set1_ps(wl[q]);
    }
}

/* The masks at positions i .. i + 16 (lanes outside k are not read). */
static inline __m512 mask16(const float *const *rows, long i, const __m512 *w, __m512 b, __mmask16 k)
{
    __m512 t = b;
    for (int q = 0; q < 9; q++)
        t = _mm512_fmadd_ps(w[q], _mm512_maskz_loadu_ps(k, rows[q] + i), t);
    return sigmoid16(t);
}

static void masks16(const float *S, long plane, int W, long p0, long n, const float *wl, float bl,
                    float *m)
{
    const float *rows[9];
    __m512 w[9];
    const __m512 b = _mm512_set1_ps(bl);
    taps16(S, plane, W, p0, wl, rows, w);
    long i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(m + i, mask16(rows, i, w, b, (__mmask16)0xFFFF));
    if (i < n)
        _mm512_mask_storeu_ps(m + i, lanes(n - i), mask16(rows, i, w, b, lanes(n - i)));
}

static inline void sums16(const float *const *rows, const float *zs, long i, const __m512 *w, __m512 b,
                          __mmask16 k, __m512 *s, __m512 *d)
{
    const __m512 m = mask16(rows, i, w, b, k);
    *s = _mm512_mask_add_ps(*s, k, *s, m);
    *d = _mm512_fmadd_ps(m, _mm512_maskz_loadu_ps(k, zs + i), *d);
}

static void mask_sums16(const float *S, long plane, int W, long p0, long n, const float *wl, float bl,
                        const float *zs, float *sum, float *dot)
{
    const float *rows[9];
    __m512 w[9], s = _mm512_setzero_ps(), d = _mm512_setzero_ps();
    const __m512 b = _mm512_set1_ps(bl);
    taps16(S, plane, W, p0, wl, rows, w);
    long i = 0;
    for (; i + 16 <= n; i += 16)
        sums16(rows, zs, i, w, b, (__mmask16)0xFFFF, &s, &d);
    if (i < n)
        sums16(rows, zs, i, w, b, lanes(n - i), &s, &d);
    *sum += _mm512_reduce_add_ps(s);
    *dot += _mm512_reduce_add_ps(d);
}

/* Backward without a transformation at positions i .. i + 16: dP = (ct z + g) M (1 - M) over the
   masks M in dp, the direct term dz += ct M, and the filter and bias sums in acc[0 .. 9]. */
static inline void grads16_at(const float *const *rows, const float *zs, float *dp, float *dz, long i,
                              __m512 ct, __m512 g, __mmask16 k, __m512 *acc)
{
    const __m512 m = _mm512_maskz_loadu_ps(k, dp + i);
    if (dz)
        _mm512_mask_storeu_ps(dz + i, k, _mm512_fmadd_ps(ct, m, _mm512_maskz_loadu_ps(k, dz + i)));
    const __m512 v = _mm512_mul_ps(_mm512_fmadd_ps(ct, _mm512_maskz_loadu_ps(k, zs + i), g),
                                   _mm512_fnmadd_ps(m, m, m));        /* 0 outside k: M is 0 there */
    _mm512_mask_storeu_ps(dp + i, k, v);
    acc[9] = _mm512_add_ps(acc[9], v);
    for (int q = 0; q < 9; q++)
        acc[q] = _mm512_fmadd_ps(v, _mm512_maskz_loadu_ps(k, rows[q] + i), acc[q]);
}

static void grads16(const float *S, long plane, int W, long p0, long n, const float *zs, float *dp,
                    float *dz, float ct, float g, float *dD, float *da)
{
    const float *rows[9];
    __m512 unused[9], acc[10];
    const float ones[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    taps16(S, plane, W, p0, ones, rows, unused);
    for (int q = 0; q < 10; q++)
        acc[q] = _mm512_setzero_ps();
    const __m512 c = _mm512_set1_ps(ct), h = _mm512_set1_ps(g);
    long i = 0;
    for (; i + 16 <= n; i += 16)
        grads16_at(rows, zs, dp, dz, i, c, h, (__mmask16)0xFFFF, acc);
    if (i < n)
        grads16_at(rows, zs, dp, dz, i, c, h, lanes(n - i), acc);
    for (int q = 0; q < 9; q++)
        dD[q] += _mm512_reduce_add_ps(acc[q]);
    *da += _mm512_reduce_add_ps(acc[9]);
}

/* dz += the transposed correlation of dP with w for `rows` rows of W: Q holds dP from the row
   above them (row stride W, rows outside the image zero); the column shifts are masked loads. */
static void transposed16(const float *Q, int W, int rows, const float *wt, float *dz)
{
    __m512 w[9];
    for (int q = 0; q < 9; q++)
        w[q] = _mm512_set1_ps(wt[q]);
    for (int y = 0; y < rows; y++)
        for (int x0 = 0; x0 < W; x0 += 16) {
            const __mmask16 k = lanes(W - x0), right = lanes(W - x0 - 1), left = x0 ? k : k & 0xFFFE;
            float *out = dz + (long)y * W + x0;
            __m512 acc = _mm512_maskz_loadu_ps(k, out);
            for (int i = 0; i < 3; i++) {
                const float *row = Q + (long)(y + 2 - i) * W + x0;
                acc = _mm512_fmadd_ps(w[3 * i], _mm512_maskz_loadu_ps(right, row + 1), acc);
                acc = _mm512_fmadd_ps(w[3 * i + 1], _mm512_maskz_loadu_ps(k, row), acc);
                acc = _mm512_fmadd_ps(w[3 * i + 2], _mm512_maskz_loadu_ps(left, row - 1), acc);
            }
            _mm512_mask_storeu_ps(out, k, acc);
        }
}
#endif
"""
