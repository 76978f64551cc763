// The int8 fast path: activation quantization, the weight table, and the kernels
// (a portable reference and the AVX-512 VNNI one).
#include "internal.h"
#include <math.h>
#include <stdlib.h>

int64_t mk_q8_vector_bytes(int64_t cols) {
    return cols + (cols / 8) * (int64_t)(sizeof(float) + sizeof(int32_t)) + 128;
}

mk_q8_vector mk_q8_vector_in(void *memory, int64_t cols) {
    uintptr_t p = ((uintptr_t)memory + 63) & ~(uintptr_t)63;
    mk_q8_vector v;
    v.q = (int8_t *)p;
    v.scale = (float *)(p + (uintptr_t)cols);
    v.neg_corr = (int32_t *)(p + (uintptr_t)cols + (uintptr_t)(cols / 8) * sizeof(float));
    return v;
}

void mk_q8_quantize(const float *x, int64_t cols, mk_q8_vector *out) {
    for (int64_t base = 0; base < cols; base += 128) {
        int8_t q[128];
        float scales[2];
        for (int half = 0; half < 2; half++) {
            const float *xb = x + base + 64 * half;
            float amax = 0;
            for (int i = 0; i < 64; i++) amax = fmaxf(amax, fabsf(xb[i]));
            const float scale = amax / 127.0f;
            const float inverse = amax > 0 ? 127.0f / amax : 0.0f;
            for (int i = 0; i < 64; i++) q[64 * half + i] = (int8_t)lrintf(xb[i] * inverse);
            scales[half] = scale;
        }
        int8_t *dst = out->q + base;
        for (int j = 0; j < 64; j++) {
            dst[j] = q[2 * j];
            dst[64 + j] = q[2 * j + 1];
        }
        const int64_t lane0 = base / 8;
        for (int l = 0; l < 16; l++) {
            int32_t sum = 0;
            for (int i = 0; i < 8; i++) sum += q[8 * l + i];
            out->neg_corr[lane0 + l] = -128 * sum;
            out->scale[lane0 + l] = scales[l / 8];
        }
    }
}

float mk_q8_lut(const float table[16], uint8_t lut[16]) {
    float amax = 0;
    for (int i = 0; i < 16; i++) amax = fmaxf(amax, fabsf(table[i]));
    if (amax == 0) { for (int i = 0; i < 16; i++) lut[i] = 128; return 1; }
    // Among multipliers that keep the largest value within int8, take the one that
    // represents the table best (FP4's table is exact at 120 / max but for one value).
    float best = 127.0f / amax, best_error = INFINITY;
    for (int top = 127; top >= 96; top--) {
        const float m = (float)top / amax;
        float error = 0;
        for (int i = 0; i < 16; i++) {
            const float v = table[i] * m;
            error += fabsf(v - rintf(v)) / m;
        }
        if (error < best_error - 1e-7f) { best_error = error; best = m; }
    }
    for (int i = 0; i < 16; i++) lut[i] = (uint8_t)(int)(rintf(table[i] * best) + 128);
    return 1.0f / best;
}

int mk_q4_fits_q8(const mk_q4_matrix *w) { return w->blocksize == 64 && w->cols % 128 == 0; }

/// The definition, one element at a time: what the VNNI kernel computes, up to
/// float summation order.
static void gemv_q8_scalar(const mk_q4_matrix *w, const uint8_t lut[16], float lut_scale,
                           const mk_q8_vector *x, int64_t batch, float *y, int64_t ldy, int64_t r0, int64_t r1) {
    const int64_t n = w->cols;
    for (int64_t r = r0; r < r1; r++) {
        for (int64_t b = 0; b < batch; b++) {
            float sum = 0;
            for (int64_t pair = 0; pair < n / 128; pair++) {
                for (int l = 0; l < 16; l++) {
                    int32_t acc = x[b].neg_corr[pair * 16 + l];
                    for (int i = 0; i < 4; i++) {
                        const int64_t j = 4 * l + i;  // byte of the pair's 64 code bytes
                        const uint8_t code_byte = w->codes[(r * n + pair * 128) / 2 + j];
                        acc += (int32_t)lut[code_byte >> 4] * x[b].q[pair * 128 + j];
                        acc += (int32_t)lut[code_byte & 15] * x[b].q[pair * 128 + 64 + j];
                    }
                    const float absmax = w->absmax[(r * n + pair * 128) / 64 + l / 8];
                    sum += (float)acc * x[b].scale[pair * 16 + l] * absmax;
                }
            }
            y[b * ldy + r] = sum * lut_scale;
        }
    }
}

#if defined(__x86_64__)
#include <immintrin.h>
#define VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

/// One vector: two independent accumulator chains, two pairs (256 weights) per iteration.
VNNI static void gemv_q8_vnni_single(const mk_q4_matrix *w, const uint8_t lut[16], float lut_scale,
                                     const mk_q8_vector *v, float *y, int64_t r0, int64_t r1) {
    const int64_t n = w->cols, pairs = n / 128;
    const __m512i table = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)lut));
    const __m512i nibble = _mm512_set1_epi8(0x0F);
    const __m512i halves = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    for (int64_t r = r0; r < r1; r++) {
        __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
        const uint8_t *codes = w->codes + r * n / 2;
        const float *absmax = w->absmax + r * n / 64;
        int64_t p = 0;
#define PAIR(P, ACC)                                                                                        \
        do {                                                                                                \
            const __m512i bytes = _mm512_loadu_si512(codes + 64 * (P));                                     \
            const __m512i hi = _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srli_epi16(bytes, 4), nibble)); \
            const __m512i lo = _mm512_shuffle_epi8(table, _mm512_and_si512(bytes, nibble));                 \
            const __m512 scale = _mm512_permutexvar_ps(halves, _mm512_castps128_ps512(                      \
                _mm_castpd_ps(_mm_load_sd((const double *)(absmax + 2 * (P))))));                           \
            __m512i dot = _mm512_loadu_si512(v->neg_corr + 16 * (P));                                       \
            dot = _mm512_dpbusd_epi32(dot, hi, _mm512_loadu_si512(v->q + 128 * (P)));                       \
            dot = _mm512_dpbusd_epi32(dot, lo, _mm512_loadu_si512(v->q + 128 * (P) + 64));                  \
            ACC = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(scale, _mm512_loadu_ps(v->scale + 16 * (P))), ACC); \
        } while (0)
        for (; p + 2 <= pairs; p += 2) {
            PAIR(p, acc0);
            PAIR(p + 1, acc1);
        }
        if (p < pairs) PAIR(p, acc0);
#undef PAIR
        y[r] = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) * lut_scale;
    }
}

/// Several vectors: each pair of blocks is decoded once and multiplied with every
/// vector. Inlined with a constant batch so the accumulators stay in registers.
VNNI static inline __attribute__((always_inline)) void gemv_q8_vnni_batch(
    const mk_q4_matrix *w, const uint8_t lut[16], float lut_scale, const mk_q8_vector *x, const int batch,
    float *y, int64_t ldy, int64_t r0, int64_t r1) {
    const int64_t n = w->cols, pairs = n / 128;
    const __m512i table = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)lut));
    const __m512i nibble = _mm512_set1_epi8(0x0F);
    const __m512i halves = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    for (int64_t r = r0; r < r1; r++) {
        __m512 acc[MK_MAX_BATCH];
        for (int b = 0; b < batch; b++) acc[b] = _mm512_setzero_ps();
        const uint8_t *codes = w->codes + r * n / 2;
        const float *absmax = w->absmax + r * n / 64;
        for (int64_t p = 0; p < pairs; p++) {
            const __m512i bytes = _mm512_loadu_si512(codes + 64 * p);
            const __m512i hi = _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srli_epi16(bytes, 4), nibble));
            const __m512i lo = _mm512_shuffle_epi8(table, _mm512_and_si512(bytes, nibble));
            const __m512 scale = _mm512_permutexvar_ps(halves, _mm512_castps128_ps512(
                _mm_castpd_ps(_mm_load_sd((const double *)(absmax + 2 * p)))));
            for (int b = 0; b < batch; b++) {
                const mk_q8_vector *v = x + b;
                __m512i dot = _mm512_loadu_si512(v->neg_corr + 16 * p);
                dot = _mm512_dpbusd_epi32(dot, hi, _mm512_loadu_si512(v->q + 128 * p));
                dot = _mm512_dpbusd_epi32(dot, lo, _mm512_loadu_si512(v->q + 128 * p + 64));
                const __m512 s = _mm512_mul_ps(scale, _mm512_loadu_ps(v->scale + 16 * p));
                acc[b] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), s, acc[b]);
            }
        }
        for (int b = 0; b < batch; b++) y[b * ldy + r] = _mm512_reduce_add_ps(acc[b]) * lut_scale;
    }
}

VNNI static void gemv_q8_vnni(const mk_q4_matrix *w, const uint8_t lut[16], float lut_scale,
                              const mk_q8_vector *x, int64_t batch, float *y, int64_t ldy, int64_t r0, int64_t r1) {
    switch (batch) {
    case 1: gemv_q8_vnni_single(w, lut, lut_scale, x, y, r0, r1); break;
    case 2: gemv_q8_vnni_batch(w, lut, lut_scale, x, 2, y, ldy, r0, r1); break;
    case 3: gemv_q8_vnni_batch(w, lut, lut_scale, x, 3, y, ldy, r0, r1); break;
    case 4: gemv_q8_vnni_batch(w, lut, lut_scale, x, 4, y, ldy, r0, r1); break;
    case 5: gemv_q8_vnni_batch(w, lut, lut_scale, x, 5, y, ldy, r0, r1); break;
    case 6: gemv_q8_vnni_batch(w, lut, lut_scale, x, 6, y, ldy, r0, r1); break;
    case 7: gemv_q8_vnni_batch(w, lut, lut_scale, x, 7, y, ldy, r0, r1); break;
    default: gemv_q8_vnni_batch(w, lut, lut_scale, x, 8, y, ldy, r0, r1); break;
    }
}
#endif

typedef void (*gemv_q8_fn)(const mk_q4_matrix *, const uint8_t *, float, const mk_q8_vector *, int64_t, float *,
                           int64_t, int64_t, int64_t);

static gemv_q8_fn pick(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni"))
        return gemv_q8_vnni;
#endif
    return NULL;
}

int mk_q8_available(void) { return pick() != NULL && strcmp(mk_isa(), "avx512") == 0; }

void mk_q4_gemv_q8(const mk_q4_matrix *w, const uint8_t lut[16], float lut_scale,
                   const mk_q8_vector *x, int64_t batch, float *y, int64_t ldy, int64_t r0, int64_t r1) {
    gemv_q8_fn fn = strcmp(mk_isa(), "avx512") == 0 ? pick() : NULL;
    (fn ? fn : gemv_q8_scalar)(w, lut, lut_scale, x, batch, y, ldy, r0, r1);
}
