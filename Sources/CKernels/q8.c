// The int8 fast path's inputs: activation rows quantized to int8 per block of 64, and
// the int8 form of a 4-bit table. The products are in packed.c.
#include "internal.h"
#include <math.h>
#include <stdlib.h>

int64_t mk_q8_rows_bytes(int64_t rows, int64_t cols) {
    return rows * cols + rows * (cols / 64) * (int64_t)(sizeof(float) + sizeof(int32_t)) + 128;
}

mk_q8_rows mk_q8_rows_in(void *memory, int64_t rows, int64_t cols) {
    uintptr_t p = ((uintptr_t)memory + 63) & ~(uintptr_t)63;
    mk_q8_rows x;
    x.rows = rows;
    x.cols = cols;
    x.q = (int8_t *)p;
    x.scale = (float *)(p + (uintptr_t)(rows * cols));
    x.neg_corr = (int32_t *)(p + (uintptr_t)(rows * cols) + (uintptr_t)(rows * (cols / 64)) * sizeof(float));
    return x;
}

static void quantize_blocks_scalar(const float *x, int64_t ldx, mk_q8_rows *out, int64_t block_begin, int64_t block_end) {
    const int64_t blocks = out->cols / 64;
    for (int64_t t = 0; t < out->rows; t++) {
        for (int64_t b = block_begin; b < block_end; b++) {
            const float *xb = x + t * ldx + 64 * b;
            float amax = 0;
            for (int i = 0; i < 64; i++) amax = fmaxf(amax, fabsf(xb[i]));
            const float inverse = amax > 0 ? 127.0f / amax : 0.0f;
            int32_t sum = 0;
            int8_t *q = out->q + t * out->cols + 64 * b;
            for (int i = 0; i < 64; i++) {
                q[i] = (int8_t)lrintf(xb[i] * inverse);
                sum += q[i];
            }
            out->scale[t * blocks + b] = amax / 127.0f;
            out->neg_corr[t * blocks + b] = -128 * sum;
        }
    }
}

#if defined(__x86_64__)
#include <immintrin.h>

#define AVX512Q __attribute__((target("avx512f,avx512bw")))

/// One block of 64 values times `inverse` (127 over their largest magnitude) as int8
/// into q; returns their sums, 16 lanes of partial sums.
AVX512Q static inline __m512i quantize_values_avx512(const float *xb, __m512 inverse, int8_t *q) {
    __m512i sum = _mm512_setzero_si512();
    for (int i = 0; i < 4; i++) {
        const __m512i r = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xb + 16 * i), inverse));  // round to nearest even, as lrintf
        sum = _mm512_add_epi32(sum, r);
        _mm_storeu_si128((__m128i *)(q + 16 * i), _mm512_cvtsepi32_epi8(r));
    }
    return sum;
}

/// One block of 64: its largest magnitude, int8 values and their sum.
AVX512Q static void quantize_block_avx512(const float *xb, int8_t *q, float *scale, int32_t *neg_corr) {
    __m512 m = _mm512_setzero_ps();
    for (int i = 0; i < 4; i++) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(xb + 16 * i)));
    const float amax = _mm512_reduce_max_ps(m);
    const __m512i sum = quantize_values_avx512(xb, _mm512_set1_ps(amax > 0 ? 127.0f / amax : 0.0f), q);
    *scale = amax / 127.0f;
    *neg_corr = -128 * _mm512_reduce_add_epi32(sum);
}

/// The same arithmetic, 16 lanes at a time, and 16 blocks at a time where a row has
/// them: their largest magnitudes, the 16 divisions and the 16 sums are each one
/// vector (a horizontal reduction and a scalar division per block made a 4-row decode
/// batch of the 7B's 8192 columns take 5 us, on the caller's thread while the pool
/// waits; 256 such vectors a step).
AVX512Q static void quantize_blocks_avx512(const float *x, int64_t ldx, mk_q8_rows *out, int64_t block_begin, int64_t block_end) {
    const int64_t blocks = out->cols / 64;
    for (int64_t t = 0; t < out->rows; t++) {
        const float *row = x + t * ldx;
        int8_t *q = out->q + t * out->cols;
        float *scale = out->scale + t * blocks;
        int32_t *neg_corr = out->neg_corr + t * blocks;
        int64_t b = block_begin;
        for (; b + 16 <= block_end; b += 16) {
            __m512 largest[16];
            for (int j = 0; j < 16; j++) {
                const float *xb = row + 64 * (b + j);
                __m512 m = _mm512_abs_ps(_mm512_loadu_ps(xb));
                for (int i = 1; i < 4; i++) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(xb + 16 * i)));
                largest[j] = m;
            }
            const __m512 amax = mk_lanes16(largest, MK_LANES_MAX);
            const __m512 k127 = _mm512_set1_ps(127.0f);
            float inverse[16];
            _mm512_storeu_ps(inverse, _mm512_maskz_div_ps(_mm512_cmp_ps_mask(amax, _mm512_setzero_ps(), _CMP_GT_OQ), k127, amax));
            _mm512_storeu_ps(scale + b, _mm512_div_ps(amax, k127));
            __m512 sums[16];
            for (int j = 0; j < 16; j++)
                sums[j] = _mm512_castsi512_ps(quantize_values_avx512(row + 64 * (b + j), _mm512_set1_ps(inverse[j]), q + 64 * (b + j)));
            const __m512i total = _mm512_castps_si512(mk_lanes16(sums, MK_LANES_ADD_I32));
            _mm512_storeu_si512(neg_corr + b, _mm512_mullo_epi32(total, _mm512_set1_epi32(-128)));
        }
        for (; b < block_end; b++) quantize_block_avx512(row + 64 * b, q + 64 * b, scale + b, neg_corr + b);
    }
}
#endif

void mk_q8_quantize_blocks(const float *x, int64_t ldx, mk_q8_rows *out, int64_t block_begin, int64_t block_end) {
    const int64_t blocks = out->cols / 64;
    if (block_begin < 0) block_begin = 0;
    if (block_end > blocks) block_end = blocks;
    if (block_begin >= block_end) return;
#if defined(__x86_64__)
    if (mk_isa_level() == MK_ISA_AVX512) {
        quantize_blocks_avx512(x, ldx, out, block_begin, block_end);
        return;
    }
#endif
    quantize_blocks_scalar(x, ldx, out, block_begin, block_end);
}

void mk_q8_quantize_rows(const float *x, int64_t ldx, mk_q8_rows *out) {
    mk_q8_quantize_blocks(x, ldx, out, 0, out->cols / 64);
}

void mk_q8_quantize_shared(const float *x, int64_t ldx, mk_q8_rows *out, mk_q8_claims *claims, int thread, int threads) {
    const int64_t blocks = out->cols / 64;
    const int parts = threads < 1 ? 1 : threads > 64 ? 64 : threads;
    for (int k = 0; k < parts; k++) {
        const int part = (thread + k) % parts;  // its own part first
        const uint64_t bit = (uint64_t)1 << part;
        if (__atomic_fetch_or(&claims->claimed, bit, __ATOMIC_ACQ_REL) & bit) continue;
        mk_q8_quantize_blocks(x, ldx, out, blocks * part / parts, blocks * (part + 1) / parts);
        __atomic_fetch_add(&claims->done, 1, __ATOMIC_RELEASE);
    }
    // every part is claimed now; the ones others claimed are being quantized by running threads
    while (__atomic_load_n(&claims->done, __ATOMIC_ACQUIRE) < parts) cpu_relax();
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
