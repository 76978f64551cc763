// Prefill products on the int8 fast path: a 4-bit weight panel of 16 rows is decoded
// once into int8, laid out as [k/4][16 rows][4], and multiplied with every activation
// row by vpdpbusd (16 rows x 4 k per instruction), with one float rescale per block
// of 64 k (the weight absmax of each row times the activation block's scale).
#include "internal.h"
#include <math.h>

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

void mk_q8_quantize_rows(const float *x, int64_t ldx, mk_q8_rows *out) {
    const int64_t blocks = out->cols / 64;
    for (int64_t t = 0; t < out->rows; t++) {
        for (int64_t b = 0; b < blocks; b++) {
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

int64_t mk_q4_gemm_q8_scratch_bytes(int64_t cols) { return cols * 16 + (cols / 64) * 16 * 4 + cols + 256; }

#if defined(__x86_64__)
#include <immintrin.h>
#define VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

/// Decode rows [r0, r0 + count) (count <= 16) into the panel layout; missing rows are zero.
VNNI static void pack_panel(const mk_q4_matrix *w, const uint8_t lut[16], int64_t r0, int64_t count,
                            uint8_t *panel, float *absmax, uint8_t *row) {
    const int64_t n = w->cols, blocks = n / 64;
    const __m512i table = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)lut));
    const __m512i nibble = _mm512_set1_epi8(0x0F);
    for (int64_t i = 0; i < 16; i++) {
        if (i >= count) {
            for (int64_t k4 = 0; k4 < n / 4; k4++) memset(panel + k4 * 64 + i * 4, 128, 4);
            for (int64_t b = 0; b < blocks; b++) absmax[b * 16 + i] = 0;
            continue;
        }
        const int64_t r = r0 + i;
        const uint8_t *codes = w->codes + r * n / 2;
        // natural order: byte j of the codes holds k = 2j (high nibble) and 2j + 1
        for (int64_t c = 0; c < n / 2; c += 64) {
            const __m512i bytes = _mm512_loadu_si512(codes + c);
            const __m512i hi = _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srli_epi16(bytes, 4), nibble));
            const __m512i lo = _mm512_shuffle_epi8(table, _mm512_and_si512(bytes, nibble));
            const __m512i a = _mm512_unpacklo_epi8(hi, lo), b = _mm512_unpackhi_epi8(hi, lo);
            // unpack works per 128-bit lane: a holds elements [0,16) [32,48) [64,80) [96,112), b the others
            const __m512i first = _mm512_permutex2var_epi64(a, _mm512_set_epi64(11, 10, 3, 2, 9, 8, 1, 0), b);
            const __m512i second = _mm512_permutex2var_epi64(a, _mm512_set_epi64(15, 14, 7, 6, 13, 12, 5, 4), b);
            _mm512_storeu_si512(row + 2 * c, first);
            _mm512_storeu_si512(row + 2 * c + 64, second);
        }
        const uint32_t *words = (const uint32_t *)row;
        for (int64_t k4 = 0; k4 < n / 4; k4++) memcpy(panel + k4 * 64 + i * 4, words + k4, 4);
        for (int64_t b = 0; b < blocks; b++) absmax[b * 16 + i] = w->absmax[r * blocks + b];
    }
}

enum { TOKENS = 12 };

/// One panel against `tokens` activation rows starting at t0. Inlined with tokens == TOKENS
/// for full groups, so the token loops unroll and the accumulators stay in registers.
VNNI static inline __attribute__((always_inline)) void panel_tile(
    const mk_q8_rows *x, const uint8_t *panel, const float *absmax, int64_t blocks, int64_t t0,
    const int tokens, float lut_scale, float *y, int64_t ldy, int64_t r0, __mmask16 valid) {
    const int64_t n = x->cols;
    __m512 acc[TOKENS];
    for (int t = 0; t < tokens; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < blocks; b++) {
        __m512i dot[TOKENS];
        for (int t = 0; t < tokens; t++) dot[t] = _mm512_set1_epi32(x->neg_corr[(t0 + t) * blocks + b]);
        const uint8_t *wp = panel + b * 16 * 64;
        const int8_t *xq = x->q + t0 * n + b * 64;
        for (int q = 0; q < 16; q++) {
            const __m512i wv = _mm512_load_si512(wp + q * 64);
            for (int t = 0; t < tokens; t++) {
                int32_t word;
                memcpy(&word, xq + t * n + q * 4, 4);
                dot[t] = _mm512_dpbusd_epi32(dot[t], wv, _mm512_set1_epi32(word));
            }
        }
        const __m512 wscale = _mm512_load_ps(absmax + b * 16);
        for (int t = 0; t < tokens; t++) {
            const __m512 s = _mm512_mul_ps(wscale, _mm512_set1_ps(x->scale[(t0 + t) * blocks + b]));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[t]), s, acc[t]);
        }
    }
    const __m512 output_scale = _mm512_set1_ps(lut_scale);
    for (int t = 0; t < tokens; t++)
        _mm512_mask_storeu_ps(y + (t0 + t) * ldy + r0, valid, _mm512_mul_ps(acc[t], output_scale));
}

VNNI static void gemm_q8_vnni(const mk_q4_matrix *w, const uint8_t lut[16], float lut_scale, const mk_q8_rows *x,
                              float *y, int64_t ldy, int64_t p0, int64_t p1, void *scratch) {
    const int64_t n = w->cols, blocks = n / 64;
    uint8_t *panel = (uint8_t *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    float *absmax = (float *)(panel + n * 16);
    uint8_t *row = (uint8_t *)(absmax + blocks * 16);
    for (int64_t p = p0; p < p1; p++) {
        const int64_t r0 = p * 16, count = w->rows - r0 < 16 ? w->rows - r0 : 16;
        const __mmask16 valid = (__mmask16)((1u << count) - 1);
        pack_panel(w, lut, r0, count, panel, absmax, row);
        int64_t t0 = 0;
        for (; t0 + TOKENS <= x->rows; t0 += TOKENS)
            panel_tile(x, panel, absmax, blocks, t0, TOKENS, lut_scale, y, ldy, r0, valid);
        for (; t0 < x->rows; t0++)
            panel_tile(x, panel, absmax, blocks, t0, 1, lut_scale, y, ldy, r0, valid);
    }
}
#endif

void mk_q4_gemm_q8(const mk_q4_matrix *w, const uint8_t lut[16], float lut_scale, const mk_q8_rows *x,
                   float *y, int64_t ldy, int64_t p0, int64_t p1, void *scratch) {
#if defined(__x86_64__)
    if (mk_q8_available()) { gemm_q8_vnni(w, lut, lut_scale, x, y, ldy, p0, p1, scratch); return; }
#endif
    // Portable definition (tests and CPUs without VNNI): the same int8 arithmetic.
    const int64_t n = w->cols, blocks = n / 64;
    uint8_t *row = scratch;
    for (int64_t r = p0 * 16; r < p1 * 16 && r < w->rows; r++) {
        for (int64_t k = 0; k < n; k++) {
            const uint8_t byte = w->codes[(r * n + k) / 2];
            row[k] = lut[k % 2 == 0 ? byte >> 4 : byte & 15];
        }
        for (int64_t t = 0; t < x->rows; t++) {
            float sum = 0;
            for (int64_t b = 0; b < blocks; b++) {
                int32_t dot = x->neg_corr[t * blocks + b];
                for (int64_t k = 64 * b; k < 64 * b + 64; k++) dot += (int32_t)row[k] * x->q[t * n + k];
                sum += (float)dot * w->absmax[r * blocks + b] * x->scale[t * blocks + b];
            }
            y[t * ldy + r] = sum * lut_scale;
        }
    }
}
