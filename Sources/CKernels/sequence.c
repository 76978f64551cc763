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

void mk_selective_scan(float *h, const float *A, const float *Dskip,
                       const float *dt, const float *x,
                       const float *B, const float *C, int64_t ldbc,
                       const float *z, int64_t ldz,
                       int64_t T, int64_t D, int64_t N, float *y,
                       int64_t d_begin, int64_t d_end) {
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
