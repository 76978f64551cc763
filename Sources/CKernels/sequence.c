// The per-token parts of a Mamba block: norms, the causal conv, softplus and the
// selective scan. Plain C that the compiler vectorizes; see CKernels.h for shapes.
#include "internal.h"
#include <math.h>

static inline float silu(float v) { return v / (1.0f + expf(-v)); }

static inline int use_avx512(void) { return mk_isa_level() == MK_ISA_AVX512; }

/// Where state (or decay rate) n of channel d lives: [D / 16][16][16] tiles when `tiled`
/// (mk_scan_tiled), else [D][N].
static inline int64_t scan_index(int64_t d, int64_t n, int64_t N, int tiled) {
    return tiled ? (d / 16) * 256 + n * 16 + d % 16 : d * N + n;
}

#if defined(__x86_64__)
#include <immintrin.h>
#define AVX512 __attribute__((target("avx512f,avx512dq,fma")))

/// exp for every lane, within 2 ulp: 2^n * p(r) with r = x - n ln2, |r| <= ln2 / 2.
AVX512 static inline __m512 exp512(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
    x = _mm512_min_ps(x, _mm512_set1_ps(88.7f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

/// 2^t for t <= 0, within 1 ulp where the result is a normal float (0.93 ulp at worst
/// over every 16th float of [-126, 0] against exp2 in double): 2^n * p(f) with
/// n = round(t), f = t - n (exact), p a degree-6 minimax fit of 2^f on [-1/2, 1/2]
/// (relative error 1.9e-9). t below -150 counts as -150: the result rounds to 0 or to
/// the smallest subnormal.
AVX512 static inline __m512 exp2_nonpositive512(__m512 t) {
    t = _mm512_max_ps(t, _mm512_set1_ps(-150.0f));
    const __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_sub_ps(t, n);
    __m512 p = _mm512_set1_ps(1.534581178402692e-4f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.339993142242233e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.618488959714705e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5503287764658724e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022646890593224e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.931472057374968e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

AVX512 static inline __m512 silu512(__m512 v) {
    const __m512 one = _mm512_set1_ps(1.0f);
    return _mm512_div_ps(v, _mm512_add_ps(one, exp512(_mm512_sub_ps(_mm512_setzero_ps(), v))));
}

/// log(1 + u) for u in [0, 1], within a few ulp: log of w = 1 + u via exponent and
/// mantissa, corrected for the rounding of 1 + u (u * log(w) / (w - 1)).
AVX512 static inline __m512 log1p512(__m512 u) {
    const __m512 one = _mm512_set1_ps(1.0f);
    const __m512 w = _mm512_add_ps(one, u);
    __m512 m = _mm512_getmant_ps(w, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_zero);  // [1, 2)
    __m512 e = _mm512_getexp_ps(w);
    const __mmask16 big = _mm512_cmp_ps_mask(m, _mm512_set1_ps(1.41421356f), _CMP_GT_OQ);
    m = _mm512_mask_mul_ps(m, big, m, _mm512_set1_ps(0.5f));
    e = _mm512_mask_add_ps(e, big, e, one);
    const __m512 f = _mm512_sub_ps(m, one), z = _mm512_mul_ps(f, f);
    __m512 p = _mm512_set1_ps(7.0376836292e-2f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(-1.1514610310e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.1676998740e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(-1.2420140846e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.4249322787e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(-1.6668057665e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.0000714765e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(-2.4999993993e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(3.3333331174e-1f));
    __m512 r = _mm512_mul_ps(_mm512_mul_ps(p, z), f);
    r = _mm512_fmadd_ps(e, _mm512_set1_ps(-2.12194440e-4f), r);
    r = _mm512_fnmadd_ps(z, _mm512_set1_ps(0.5f), r);
    r = _mm512_add_ps(f, r);
    r = _mm512_fmadd_ps(e, _mm512_set1_ps(0.693359375f), r);
    // u * log(w) / (w - 1) undoes the rounding of 1 + u; where w == 1, log1p(u) = u
    const __m512 wm1 = _mm512_sub_ps(w, one);
    const __mmask16 exact = _mm512_cmp_ps_mask(wm1, _mm512_setzero_ps(), _CMP_EQ_OQ);
    const __m512 corrected = _mm512_div_ps(_mm512_mul_ps(r, u), _mm512_mask_blend_ps(exact, wm1, one));
    return _mm512_mask_blend_ps(exact, corrected, u);
}

/// softplus(v) = max(v, 0) + log1p(exp(-|v|)), and v itself above 20 as torch does.
AVX512 static void softplus_bias_512(float *dt, const float *bias, int64_t T, int64_t D) {
    const __m512 sign = _mm512_set1_ps(-0.0f), threshold = _mm512_set1_ps(20.0f);
    for (int64_t t = 0; t < T; t++) {
        float *row = dt + t * D;
        int64_t d = 0;
        for (; d + 16 <= D; d += 16) {
            const __m512 v = _mm512_add_ps(_mm512_loadu_ps(row + d), _mm512_loadu_ps(bias + d));
            const __m512 negative_abs = _mm512_or_ps(v, sign);
            __m512 r = _mm512_add_ps(_mm512_max_ps(v, _mm512_setzero_ps()), log1p512(exp512(negative_abs)));
            r = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, threshold, _CMP_GT_OQ), r, v);
            _mm512_storeu_ps(row + d, r);
        }
        for (; d < D; d++) {
            const float v = row[d] + bias[d];
            row[d] = v > 20.0f ? v : log1pf(expf(v));
        }
    }
}

/// The scan with N = 16 on the tiled state (mk_scan_tiled): one vector holds state n of
/// 16 channels, so dt, x and the gate load as vectors, B and C broadcast one value at a
/// time and the sum over the state is an FMA a state, not a horizontal sum. With one
/// channel's 16 states in a vector instead (until session 10), each channel needed two
/// broadcasts and its share of a 16-way transposing sum: 25% slower with the state in
/// cache (0.150 against 0.112 ms for 4 sequences of the 7B's 8192 channels on one core,
/// Benchmarks/kernels/scan_stream.c). A range that starts or ends inside a tile
/// computes the whole tile and stores only its own channels (another thread may own the
/// rest). Other shapes (D not a multiple of 16, N not 16) take the scalar loop.
AVX512 static void selective_scan_tiles(float *h, const float *A2, const float *Dskip, const float *dt, const float *x,
                                        const float *B, const float *C, int64_t ldbc, const float *z, int64_t ldz,
                                        int64_t T, int64_t D, float *y, int64_t d_begin, int64_t d_end) {
    for (int64_t t = 0; t < T; t++) {
        const float *Bt = B + t * ldbc, *Ct = C + t * ldbc;
        for (int64_t d = d_begin / 16 * 16; d < d_end; d += 16) {
            const int64_t first = d < d_begin ? d_begin - d : 0, end = d_end - d < 16 ? d_end - d : 16;
            const __mmask16 m = (__mmask16)(((1u << end) - 1) & ~((1u << first) - 1));
            const __m512 delta = _mm512_maskz_loadu_ps(m, dt + t * D + d), xv = _mm512_maskz_loadu_ps(m, x + t * D + d);
            const __m512 dx = _mm512_mul_ps(delta, xv);
            float *ht = h + d * 16;
            const float *at = A2 + d * 16;
            __m512 even = _mm512_setzero_ps(), odd = _mm512_setzero_ps();
            for (int n = 0; n < 16; n += 2) {
                // a tile's state and decay rates are 16 lines each, read once a step: ask
                // for them two tiles (2 KiB) ahead (4 and 8 were no better; asking 2 KiB
                // ahead took the per-channel scan before this one from 8.7 to 7.5-8.2 ms
                // a 4-sequence step)
                _mm_prefetch((const char *)(ht + 512 + n * 16), _MM_HINT_T0);
                _mm_prefetch((const char *)(ht + 512 + n * 16 + 16), _MM_HINT_T0);
                _mm_prefetch((const char *)(at + 512 + n * 16), _MM_HINT_T0);
                _mm_prefetch((const char *)(at + 512 + n * 16 + 16), _MM_HINT_T0);
                const __m512 decay0 = exp2_nonpositive512(_mm512_mul_ps(delta, _mm512_loadu_ps(at + n * 16)));
                const __m512 decay1 = exp2_nonpositive512(_mm512_mul_ps(delta, _mm512_loadu_ps(at + n * 16 + 16)));
                const __m512 h0 = _mm512_fmadd_ps(dx, _mm512_set1_ps(Bt[n]), _mm512_mul_ps(decay0, _mm512_loadu_ps(ht + n * 16)));
                const __m512 h1 = _mm512_fmadd_ps(dx, _mm512_set1_ps(Bt[n + 1]), _mm512_mul_ps(decay1, _mm512_loadu_ps(ht + n * 16 + 16)));
                _mm512_mask_storeu_ps(ht + n * 16, m, h0);
                _mm512_mask_storeu_ps(ht + n * 16 + 16, m, h1);
                even = _mm512_fmadd_ps(h0, _mm512_set1_ps(Ct[n]), even);
                odd = _mm512_fmadd_ps(h1, _mm512_set1_ps(Ct[n + 1]), odd);
            }
            const __m512 sum = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, Dskip + d), xv, _mm512_add_ps(even, odd));
            _mm512_mask_storeu_ps(y + t * D + d, m, _mm512_mul_ps(sum, silu512(_mm512_maskz_loadu_ps(m, z + t * ldz + d))));
        }
    }
}

/// The kernel-width-4 conv for one decode token (T = 1), 64 channels at a time; it
/// returns where it stopped. Each group of 16 is a chain of four FMAs and a SiLU (~80
/// cycles of latency) and the core overlapped few of them, so one group after another
/// took ~57 cycles each (L1 warm); four at once, ~39 (a 4-sequence step of the 7B: 32 ->
/// 22 us a layer on one thread, Benchmarks/kernels/scan_stream.c with `conv`).
/// Prefetching the 8 rows of taps 64-512 channels ahead did not help.
AVX512 static int64_t conv1d_silu_k4_token_512(float *state, const float *weight, const float *bias, const float *x,
                                               int64_t D, float *out, int64_t d_begin, int64_t d_end) {
    int64_t d = d_begin;
    for (; d + 64 <= d_end; d += 64) {
        __m512 acc[4];
        for (int g = 0; g < 4; g++) {
            const int64_t c = d + 16 * g;
            const __m512 s1 = _mm512_loadu_ps(state + D + c), s2 = _mm512_loadu_ps(state + 2 * D + c);
            const __m512 s3 = _mm512_loadu_ps(state + 3 * D + c), xt = _mm512_loadu_ps(x + c);
            acc[g] = _mm512_fmadd_ps(s1, _mm512_loadu_ps(weight + c), bias ? _mm512_loadu_ps(bias + c) : _mm512_setzero_ps());
            acc[g] = _mm512_fmadd_ps(s2, _mm512_loadu_ps(weight + D + c), acc[g]);
            acc[g] = _mm512_fmadd_ps(s3, _mm512_loadu_ps(weight + 2 * D + c), acc[g]);
            acc[g] = _mm512_fmadd_ps(xt, _mm512_loadu_ps(weight + 3 * D + c), acc[g]);
            // the window moves one tap: tap 0 is written, never read (as below)
            _mm512_storeu_ps(state + c, s1);
            _mm512_storeu_ps(state + D + c, s2);
            _mm512_storeu_ps(state + 2 * D + c, s3);
            _mm512_storeu_ps(state + 3 * D + c, xt);
        }
        for (int g = 0; g < 4; g++) _mm512_storeu_ps(out + d + 16 * g, silu512(acc[g]));
    }
    return d;
}

/// The causal conv and SiLU for the models' kernel width, 4, with the window in registers: the general
/// loop below keeps it in arrays that live on the stack (the width is a variable), and
/// shifting them through memory made each group of 16 channels one long chain of
/// store-to-load forwarding: 11.5 us for a thread's 4096 channels of one layer (L2
/// warm), 3.9 here; from memory (as in decode) 12.3 and 9.4. The same operations in the
/// same order, so the same results.
/// One decode token goes 64 channels at a time first (above).
AVX512 static void conv1d_silu_k4_512(float *state, const float *weight, const float *bias, const float *x, int64_t ldx,
                                      int64_t T, int64_t D, float *out, int64_t d_begin, int64_t d_end) {
    if (T < 1) return;
    if (T == 1) d_begin = conv1d_silu_k4_token_512(state, weight, bias, x, D, out, d_begin, d_end);
    for (int64_t d = d_begin; d < d_end; d += 16) {
        const int64_t count = d_end - d < 16 ? d_end - d : 16;
        const __mmask16 m = (__mmask16)((1u << count) - 1);
        const __m512 w0 = _mm512_maskz_loadu_ps(m, weight + d), w1 = _mm512_maskz_loadu_ps(m, weight + D + d);
        const __m512 w2 = _mm512_maskz_loadu_ps(m, weight + 2 * D + d), w3 = _mm512_maskz_loadu_ps(m, weight + 3 * D + d);
        // tap 0 is shifted out before it is used: it is written, never read
        __m512 s0, s1 = _mm512_maskz_loadu_ps(m, state + D + d);
        __m512 s2 = _mm512_maskz_loadu_ps(m, state + 2 * D + d), s3 = _mm512_maskz_loadu_ps(m, state + 3 * D + d);
        const __m512 b = bias ? _mm512_maskz_loadu_ps(m, bias + d) : _mm512_setzero_ps();
        for (int64_t t = 0; t < T; t++) {
            s0 = s1;
            s1 = s2;
            s2 = s3;
            s3 = _mm512_maskz_loadu_ps(m, x + t * ldx + d);
            __m512 acc = _mm512_fmadd_ps(s0, w0, b);
            acc = _mm512_fmadd_ps(s1, w1, acc);
            acc = _mm512_fmadd_ps(s2, w2, acc);
            acc = _mm512_fmadd_ps(s3, w3, acc);
            _mm512_mask_storeu_ps(out + t * D + d, m, silu512(acc));
        }
        _mm512_mask_storeu_ps(state + d, m, s0);
        _mm512_mask_storeu_ps(state + D + d, m, s1);
        _mm512_mask_storeu_ps(state + 2 * D + d, m, s2);
        _mm512_mask_storeu_ps(state + 3 * D + d, m, s3);
    }
}

/// Causal conv + SiLU, 16 channels at a time (kernel width K <= 16); state and weights
/// are tap-major, so every tap of 16 channels is one contiguous vector.
AVX512 static void conv1d_silu_512(float *state, const float *weight, const float *bias, const float *x, int64_t ldx,
                                   int64_t T, int64_t D, int64_t K, float *out, int64_t d_begin, int64_t d_end) {
    for (int64_t d = d_begin; d < d_end; d += 16) {
        const int64_t count = d_end - d < 16 ? d_end - d : 16;
        const __mmask16 m = (__mmask16)((1u << count) - 1);
        __m512 w[16], window[16];
        for (int64_t k = 0; k < K; k++) {
            w[k] = _mm512_maskz_loadu_ps(m, weight + k * D + d);
            window[k] = _mm512_maskz_loadu_ps(m, state + k * D + d);
        }
        const __m512 b = bias ? _mm512_maskz_loadu_ps(m, bias + d) : _mm512_setzero_ps();
        for (int64_t t = 0; t < T; t++) {
            for (int64_t k = 0; k + 1 < K; k++) window[k] = window[k + 1];
            window[K - 1] = _mm512_maskz_loadu_ps(m, x + t * ldx + d);
            __m512 acc = b;
            for (int64_t k = 0; k < K; k++) acc = _mm512_fmadd_ps(window[k], w[k], acc);
            _mm512_mask_storeu_ps(out + t * D + d, m, silu512(acc));
        }
        for (int64_t k = 0; k < K; k++) _mm512_mask_storeu_ps(state + k * D + d, m, window[k]);
    }
}
#endif


/// The sum of squares of x[0..<n] in double: the plain loop is one chain of dependent
/// double additions (4 cycles an element, ~15 us for a 4-row decode batch of the 7B's
/// hidden size, on the caller's thread while the pool waits); these keep eight chains
/// of eight lanes.
#if defined(__x86_64__)
AVX512 static double sum_of_squares_512(const float *x, int64_t n) {
    __m512d acc[8];
    for (int j = 0; j < 8; j++) acc[j] = _mm512_setzero_pd();
    int64_t i = 0;
    for (; i + 64 <= n; i += 64)
        for (int j = 0; j < 8; j++) {
            const __m512d v = _mm512_cvtps_pd(_mm256_loadu_ps(x + i + 8 * j));
            acc[j] = _mm512_fmadd_pd(v, v, acc[j]);
        }
    for (; i + 8 <= n; i += 8) {
        const __m512d v = _mm512_cvtps_pd(_mm256_loadu_ps(x + i));
        acc[0] = _mm512_fmadd_pd(v, v, acc[0]);
    }
    for (int j = 1; j < 8; j++) acc[0] = _mm512_add_pd(acc[0], acc[j]);
    double sum = _mm512_reduce_add_pd(acc[0]);
    for (; i < n; i++) sum += (double)x[i] * x[i];
    return sum;
}
#endif

static double sum_of_squares(const float *x, int64_t n) {
#if defined(__x86_64__)
    if (use_avx512()) return sum_of_squares_512(x, n);
#endif
    double partial[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) partial[j] += (double)x[i + j] * x[i + j];
    double sum = 0;
    for (int j = 0; j < 8; j++) sum += partial[j];
    for (; i < n; i++) sum += (double)x[i] * x[i];
    return sum;
}

void mk_rms_norm(const float *x, int64_t ldx, const float *weight, float eps,
                 int64_t rows, int64_t n, float *out, int64_t ldo) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * ldx;
        float *o = out + r * ldo;
        const double sum = sum_of_squares(xr, n);
        const float inv = (float)(1.0 / sqrt(sum / (double)n + (double)eps));
        if (weight) for (int64_t i = 0; i < n; i++) o[i] = xr[i] * inv * weight[i];
        else for (int64_t i = 0; i < n; i++) o[i] = xr[i] * inv;
    }
}

void mk_conv1d_silu(float *state, const float *weight, const float *bias,
                    const float *x, int64_t ldx, int64_t T, int64_t D, int64_t K, float *out,
                    int64_t d_begin, int64_t d_end) {
#if defined(__x86_64__)
    if (use_avx512() && K == 4) { conv1d_silu_k4_512(state, weight, bias, x, ldx, T, D, out, d_begin, d_end); return; }
    if (use_avx512()) { conv1d_silu_512(state, weight, bias, x, ldx, T, D, K, out, d_begin, d_end); return; }
#endif
    float window[16];  // K <= 16 (the model uses 4)
    for (int64_t d = d_begin; d < d_end; d++) {
        for (int64_t k = 0; k < K; k++) window[k] = state[k * D + d];
        for (int64_t t = 0; t < T; t++) {
            for (int64_t k = 0; k + 1 < K; k++) window[k] = window[k + 1];
            window[K - 1] = x[t * ldx + d];
            float acc = bias ? bias[d] : 0.0f;
            for (int64_t k = 0; k < K; k++) acc += window[k] * weight[k * D + d];
            out[t * D + d] = silu(acc);
        }
        for (int64_t k = 0; k < K; k++) state[k * D + d] = window[k];
    }
}

void mk_softplus_bias(float *dt, const float *bias, int64_t T, int64_t D) {
#if defined(__x86_64__)
    if (use_avx512()) { softplus_bias_512(dt, bias, T, D); return; }
#endif
    for (int64_t t = 0; t < T; t++) {
        float *row = dt + t * D;
        for (int64_t d = 0; d < D; d++) {
            const float v = row[d] + bias[d];
            // torch.nn.functional.softplus with threshold 20
            row[d] = v > 20.0f ? v : log1pf(expf(v));
        }
    }
}


void mk_selective_scan(float *h, const float *A2, const float *Dskip,
                       const float *dt, const float *x,
                       const float *B, const float *C, int64_t ldbc,
                       const float *z, int64_t ldz,
                       int64_t T, int64_t D, int64_t N, float *y,
                       int64_t d_begin, int64_t d_end) {
    const int tiled = mk_scan_tiled(D, N);
#if defined(__x86_64__)
    if (tiled && use_avx512()) {
        selective_scan_tiles(h, A2, Dskip, dt, x, B, C, ldbc, z, ldz, T, D, y, d_begin, d_end);
        return;
    }
#endif
    for (int64_t t = 0; t < T; t++) {
        const float *Bt = B + t * ldbc, *Ct = C + t * ldbc, *zt = z + t * ldz;
        for (int64_t d = d_begin; d < d_end; d++) {
            const float delta = dt[t * D + d], xv = x[t * D + d];
            const float dx = delta * xv;
            float acc = 0;
            for (int64_t n = 0; n < N; n++) {
                const int64_t i = scan_index(d, n, N, tiled);
                h[i] = exp2f(delta * A2[i]) * h[i] + dx * Bt[n];
                acc += h[i] * Ct[n];
            }
            y[t * D + d] = (acc + Dskip[d] * xv) * silu(zt[d]);
        }
    }
}

int mk_scan_tiled(int64_t D, int64_t N) { return N == 16 && D > 0 && D % 16 == 0; }

void mk_scan_layout(const float *from, float *to, int64_t D, int64_t N, int to_scan) {
    const int tiled = mk_scan_tiled(D, N);
    for (int64_t d = 0; d < D; d++)
        for (int64_t n = 0; n < N; n++) {
            const int64_t i = scan_index(d, n, N, tiled);
            if (to_scan) to[i] = from[d * N + n];
            else to[d * N + n] = from[i];
        }
}
