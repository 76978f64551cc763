// The packed int8 product for CPUs without AVX-512 VNNI: AVX2 with FMA and F16C.
//
// Same layout and the same integer arithmetic as the VNNI kernel (packed.c), with
// vpdpbusd emulated the way it is usually done on AVX2: weights turned signed
// (uint8 ^ 0x80), then vpmaddubsw(|w|, sign(a, w)) and vpmaddwd with ones. |w| and |a|
// are at most 127, so the 16-bit pair sums (at most 2 * 127 * 127) never saturate.
// A 64-byte panel vector is two 256-bit halves: rows 0-7 and rows 8-15.
#include "internal.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define AVX2 __attribute__((target("avx2,fma,f16c")))

enum { AVX2_TOKENS = 4 };

/// Signed int8 weights of one panel ([blocks][16][64] bytes) from either format.
AVX2 static void signed_panel(const mk_packed_matrix *w, int64_t p, int8_t *panel) {
    const int64_t blocks = w->cols / 64;
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    if (w->bits == 8) {
        const uint8_t *codes = w->codes + p * blocks * 1024;
        for (int64_t i = 0; i < blocks * 1024; i += 32)
            _mm256_storeu_si256((__m256i *)(panel + i),
                                _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(codes + i)), flip));
        return;
    }
    const __m256i table = _mm256_xor_si256(
        _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)w->lut)), flip);
    const __m256i nibble = _mm256_set1_epi8(0x0F);
    const uint8_t *codes = w->codes + p * blocks * 512;
    for (int64_t b = 0; b < blocks; b++)
        for (int c = 0; c < 8; c++)
            for (int h = 0; h < 2; h++) {
                const __m256i v = _mm256_loadu_si256((const __m256i *)(codes + (b * 8 + c) * 64 + 32 * h));
                _mm256_storeu_si256((__m256i *)(panel + (b * 16 + c) * 64 + 32 * h),
                                    _mm256_shuffle_epi8(table, _mm256_and_si256(v, nibble)));
                _mm256_storeu_si256((__m256i *)(panel + (b * 16 + c + 8) * 64 + 32 * h),
                                    _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(v, 4), nibble)));
            }
}

/// T (<= AVX2_TOKENS) activation rows from t0 against 8 rows (half h) of a signed panel.
AVX2 static inline __attribute__((always_inline)) void tile_half(
    const mk_packed_matrix *w, const int8_t *panel, int64_t p, int h, const mk_q8_rows *x, int64_t t0, const int T,
    float *y, int64_t ldy) {
    const int64_t n = w->cols, blocks = n / 64;
    const uint8_t *scales = w->scales + p * blocks * 16 + 8 * h;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[AVX2_TOKENS];
    for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < blocks; b++) {
        __m256i dot[AVX2_TOKENS];
        for (int t = 0; t < T; t++) dot[t] = _mm256_setzero_si256();
        const int8_t *xq = x->q + t0 * n + 64 * b;
        for (int q = 0; q < 16; q++) {
            const __m256i wv = _mm256_loadu_si256((const __m256i *)(panel + (b * 16 + q) * 64 + 32 * h));
            const __m256i magnitude = _mm256_sign_epi8(wv, wv);
            for (int t = 0; t < T; t++) {
                int32_t word;
                memcpy(&word, xq + t * n + 4 * q, 4);
                const __m256i a = _mm256_sign_epi8(_mm256_set1_epi32(word), wv);
                dot[t] = _mm256_add_epi32(dot[t], _mm256_madd_epi16(_mm256_maddubs_epi16(magnitude, a), ones));
            }
        }
        const __m256 ws = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(scales + b * 16))));
        for (int t = 0; t < T; t++) {
            const __m256 s = _mm256_mul_ps(ws, _mm256_set1_ps(x->scale[(t0 + t) * blocks + b]));
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot[t]), s, acc[t]);
        }
    }
    const int64_t r0 = p * 16 + 8 * h;
    const __m256 out = _mm256_mul_ps(_mm256_loadu_ps(w->row_scales + r0), _mm256_set1_ps(w->out_scale));
    const int64_t valid = w->rows - r0 < 8 ? w->rows - r0 : 8;
    for (int t = 0; t < T; t++) {
        float lanes[8];
        _mm256_storeu_ps(lanes, _mm256_mul_ps(acc[t], out));
        memcpy(y + (t0 + t) * ldy + r0, lanes, (size_t)valid * sizeof(float));
    }
}

AVX2 void mk_packed_gemm_avx2(const mk_packed_matrix *w, const mk_q8_rows *x, float *y, int64_t ldy,
                              int64_t p0, int64_t p1, void *scratch) {
    int8_t *panel = (int8_t *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    for (int64_t p = p0; p < p1; p++) {
        signed_panel(w, p, panel);
        for (int h = 0; h < 2 && p * 16 + 8 * h < w->rows; h++)
            for (int64_t t0 = 0; t0 < x->rows; t0 += AVX2_TOKENS) {
                switch (x->rows - t0 < AVX2_TOKENS ? x->rows - t0 : AVX2_TOKENS) {
                case 1: tile_half(w, panel, p, h, x, t0, 1, y, ldy); break;
                case 2: tile_half(w, panel, p, h, x, t0, 2, y, ldy); break;
                case 3: tile_half(w, panel, p, h, x, t0, 3, y, ldy); break;
                default: tile_half(w, panel, p, h, x, t0, AVX2_TOKENS, y, ldy); break;
                }
            }
    }
}
#endif
