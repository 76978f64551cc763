// The per-token parts of a Mamba block: norms, the causal conv, softplus and the
// selective scan. Plain C that the compiler vectorizes; see CKernels.h for shapes.
#include "internal.h"
#include <math.h>

static inline float silu(float v) { return v / (1.0f + expf(-v)); }

void mk_rms_norm(const float *x, int64_t ldx, const float *weight, float eps,
                 int64_t rows, int64_t n, float *out, int64_t ldo) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * ldx;
        float *o = out + r * ldo;
        double sum = 0;
        for (int64_t i = 0; i < n; i++) sum += (double)xr[i] * xr[i];
        const float inv = (float)(1.0 / sqrt(sum / (double)n + (double)eps));
        if (weight) for (int64_t i = 0; i < n; i++) o[i] = xr[i] * inv * weight[i];
        else for (int64_t i = 0; i < n; i++) o[i] = xr[i] * inv;
    }
}

void mk_conv1d_silu(float *state, const float *weight, const float *bias,
                    const float *x, int64_t ldx, int64_t T, int64_t D, int64_t K, float *out,
                    int64_t d_begin, int64_t d_end) {
    float window[16];  // K <= 16 (the model uses 4)
    for (int64_t d = d_begin; d < d_end; d++) {
        float *s = state + d * K;
        const float *w = weight + d * K;
        for (int64_t k = 0; k < K; k++) window[k] = s[k];
        for (int64_t t = 0; t < T; t++) {
            for (int64_t k = 0; k + 1 < K; k++) window[k] = window[k + 1];
            window[K - 1] = x[t * ldx + d];
            float acc = bias ? bias[d] : 0.0f;
            for (int64_t k = 0; k < K; k++) acc += window[k] * w[k];
            out[t * D + d] = silu(acc);
        }
        for (int64_t k = 0; k < K; k++) s[k] = window[k];
    }
}

void mk_softplus_bias(float *dt, const float *bias, int64_t T, int64_t D) {
    for (int64_t t = 0; t < T; t++) {
        float *row = dt + t * D;
        for (int64_t d = 0; d < D; d++) {
            const float v = row[d] + bias[d];
            // torch.nn.functional.softplus with threshold 20
            row[d] = v > 20.0f ? v : log1pf(expf(v));
        }
    }
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

/// The scan with N = 16: one channel's state is one zmm register.
AVX512 static void selective_scan_16(float *h, const float *A, const float *Dskip, const float *dt, const float *x,
                                     const float *B, const float *C, int64_t ldbc, const float *z, int64_t ldz,
                                     int64_t T, int64_t D, float *y, int64_t d_begin, int64_t d_end) {
    for (int64_t t = 0; t < T; t++) {
        const __m512 Bt = _mm512_loadu_ps(B + t * ldbc), Ct = _mm512_loadu_ps(C + t * ldbc);
        const float *zt = z + t * ldz;
        for (int64_t d = d_begin; d < d_end; d++) {
            const float delta = dt[t * D + d], xv = x[t * D + d];
            const __m512 decay = exp512(_mm512_mul_ps(_mm512_set1_ps(delta), _mm512_loadu_ps(A + d * 16)));
            __m512 hd = _mm512_mul_ps(decay, _mm512_loadu_ps(h + d * 16));
            hd = _mm512_fmadd_ps(_mm512_set1_ps(delta * xv), Bt, hd);
            _mm512_storeu_ps(h + d * 16, hd);
            const float acc = _mm512_reduce_add_ps(_mm512_mul_ps(hd, Ct));
            y[t * D + d] = (acc + Dskip[d] * xv) * silu(zt[d]);
        }
    }
}
#endif

void mk_selective_scan(float *h, const float *A, const float *Dskip,
                       const float *dt, const float *x,
                       const float *B, const float *C, int64_t ldbc,
                       const float *z, int64_t ldz,
                       int64_t T, int64_t D, int64_t N, float *y,
                       int64_t d_begin, int64_t d_end) {
#if defined(__x86_64__)
    if (N == 16 && strcmp(mk_isa(), "avx512") == 0) {
        selective_scan_16(h, A, Dskip, dt, x, B, C, ldbc, z, ldz, T, D, y, d_begin, d_end);
        return;
    }
#endif
    for (int64_t t = 0; t < T; t++) {
        const float *Bt = B + t * ldbc, *Ct = C + t * ldbc, *zt = z + t * ldz;
        for (int64_t d = d_begin; d < d_end; d++) {
            const float delta = dt[t * D + d], xv = x[t * D + d];
            const float dx = delta * xv;
            float *hd = h + d * N;
            const float *Ad = A + d * N;
            float acc = 0;
            for (int64_t n = 0; n < N; n++) {
                hd[n] = expf(delta * Ad[n]) * hd[n] + dx * Bt[n];
                acc += hd[n] * Ct[n];
            }
            y[t * D + d] = (acc + Dskip[d] * xv) * silu(zt[d]);
        }
    }
}
