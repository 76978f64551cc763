// AVX2 (+FMA, F16C) matrix kernels: the same exact 4-bit lookup as the AVX-512 path,
// with the 16-entry table split over two ymm registers (vpermps indexes 8).
#include "internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,f16c,fma")))

typedef struct { __m256 lo, hi; } lut16;

AVX2 static inline __m256 round_vec(__m256 v, int32_t rounding) {
    if (rounding == MK_ROUND_BF16) {
        __m256i u = _mm256_castps_si256(v);
        __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
        u = _mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7FFF), lsb));
        return _mm256_castsi256_ps(_mm256_and_si256(u, _mm256_set1_epi32((int)0xFFFF0000u)));
    }
    if (rounding == MK_ROUND_F16)
        return _mm256_cvtph_ps(_mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    return v;
}

AVX2 static inline lut16 block_lut(const mk_q4_matrix *w, int64_t block) {
    const __m256 scale = _mm256_set1_ps(w->absmax[block]);
    lut16 l;
    l.lo = round_vec(_mm256_mul_ps(_mm256_loadu_ps(w->table), scale), w->rounding);
    l.hi = round_vec(_mm256_mul_ps(_mm256_loadu_ps(w->table + 8), scale), w->rounding);
    return l;
}

/// Look up 8 codes (the low 8 bytes of `codes`).
AVX2 static inline __m256 lookup8(lut16 l, __m128i codes) {
    const __m256i idx = _mm256_cvtepu8_epi32(codes);
    const __m256 lo = _mm256_permutevar8x32_ps(l.lo, idx);
    const __m256 hi = _mm256_permutevar8x32_ps(l.hi, idx);
    return _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
}

/// The 64 weights of elements [e, e + 64) (e even), as eight vectors of 8.
AVX2 static inline void decode64(const mk_q4_matrix *w, lut16 l, int64_t e, __m256 out[8]) {
    const __m256i bytes = _mm256_loadu_si256((const __m256i *)(w->codes + (e >> 1)));
    const __m256i mask = _mm256_set1_epi8(0x0F);
    const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(bytes, 4), mask);
    const __m256i lo = _mm256_and_si256(bytes, mask);
    const __m256i a = _mm256_unpacklo_epi8(hi, lo);  // elements 0-15 | 32-47
    const __m256i b = _mm256_unpackhi_epi8(hi, lo);  // elements 16-31 | 48-63
    const __m128i parts[4] = {_mm256_castsi256_si128(a), _mm256_castsi256_si128(b),
                              _mm256_extracti128_si256(a, 1), _mm256_extracti128_si256(b, 1)};
    for (int p = 0; p < 4; p++) {
        out[2 * p] = lookup8(l, parts[p]);
        out[2 * p + 1] = lookup8(l, _mm_srli_si128(parts[p], 8));
    }
}

AVX2 static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AVX2 static void q4_gemv(const mk_q4_matrix *w, const float *x, float *y, int64_t r0, int64_t r1) {
    if (!mk_q4_blocks_align(w)) { mk_scalar_kernels.q4_gemv(w, x, y, r0, r1); return; }
    const int64_t n = w->cols, bs = w->blocksize;
    for (int64_t r = r0; r < r1; r++) {
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
        const int64_t base = r * n;
        for (int64_t c = 0; c < n; c += bs) {
            const lut16 l = block_lut(w, (base + c) / bs);
            for (int64_t k = c; k < c + bs; k += 64) {
                __m256 v[8];
                decode64(w, l, base + k, v);
                for (int j = 0; j < 8; j++)
                    acc[j & 3] = _mm256_fmadd_ps(v[j], _mm256_loadu_ps(x + k + 8 * j), acc[j & 3]);
            }
        }
        y[r] = hsum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
    }
}

AVX2 static void q4_rows_to_f32(const mk_q4_matrix *w, int64_t r0, int64_t r1, float *out) {
    if (!mk_q4_blocks_align(w)) { mk_scalar_kernels.q4_rows_to_f32(w, r0, r1, out); return; }
    const int64_t bs = w->blocksize, begin = r0 * w->cols, end = r1 * w->cols;
    for (int64_t e = begin; e < end; e += bs) {
        const lut16 l = block_lut(w, e / bs);
        for (int64_t k = e; k < e + bs; k += 64) {
            __m256 v[8];
            decode64(w, l, k, v);
            for (int j = 0; j < 8; j++) _mm256_storeu_ps(out + (k - begin) + 8 * j, v[j]);
        }
    }
}

AVX2 static inline __m256 load8(const void *data, int32_t dtype, int64_t i) {
    if (dtype == MK_DTYPE_F32) return _mm256_loadu_ps((const float *)data + i);
    const __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)data + i));
    if (dtype == MK_DTYPE_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

AVX2 static void dense_gemv(const mk_dense_matrix *w, const float *x, float *y, int64_t r0, int64_t r1) {
    const int64_t n = w->cols, n32 = n & ~(int64_t)31;
    const size_t esize = w->dtype == MK_DTYPE_F32 ? 4 : 2;
    for (int64_t r = r0; r < r1; r++) {
        const void *row = (const char *)w->data + (size_t)(r * n) * esize;
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
        for (int64_t c = 0; c < n32; c += 32)
            for (int j = 0; j < 4; j++)
                acc[j] = _mm256_fmadd_ps(load8(row, w->dtype, c + 8 * j), _mm256_loadu_ps(x + c + 8 * j), acc[j]);
        float s = hsum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
        if (n32 < n) {
            float tail[32];
            mk_convert_to_f32((const char *)row + (size_t)n32 * esize, w->dtype, n - n32, tail);
            for (int64_t c = n32; c < n; c++) s += tail[c - n32] * x[c];
        }
        y[r] = s;
    }
}

AVX2 static void dense_rows_to_f32(const mk_dense_matrix *w, int64_t r0, int64_t r1, float *out) {
    const size_t esize = w->dtype == MK_DTYPE_F32 ? 4 : 2;
    const void *src = (const char *)w->data + (size_t)(r0 * w->cols) * esize;
    const int64_t count = (r1 - r0) * w->cols, count8 = count & ~(int64_t)7;
    for (int64_t i = 0; i < count8; i += 8) _mm256_storeu_ps(out + i, load8(src, w->dtype, i));
    mk_convert_to_f32((const char *)src + (size_t)count8 * esize, w->dtype, count - count8, out + count8);
}

AVX2 static void q4_gemv_batch(const mk_q4_matrix *w, const float *x, int64_t ldx, int64_t batch,
                               float *y, int64_t ldy, int64_t r0, int64_t r1) {
    if (!mk_q4_blocks_align(w)) { mk_scalar_kernels.q4_gemv_batch(w, x, ldx, batch, y, ldy, r0, r1); return; }
    const int64_t n = w->cols, bs = w->blocksize;
    for (int64_t r = r0; r < r1; r++) {
        __m256 acc[MK_MAX_BATCH];
        for (int64_t b = 0; b < batch; b++) acc[b] = _mm256_setzero_ps();
        const int64_t base = r * n;
        for (int64_t c = 0; c < n; c += bs) {
            const lut16 l = block_lut(w, (base + c) / bs);
            for (int64_t k = c; k < c + bs; k += 64) {
                __m256 v[8];
                decode64(w, l, base + k, v);
                for (int64_t b = 0; b < batch; b++) {
                    const float *xb = x + b * ldx + k;
                    __m256 a = acc[b];
                    for (int j = 0; j < 8; j++) a = _mm256_fmadd_ps(v[j], _mm256_loadu_ps(xb + 8 * j), a);
                    acc[b] = a;
                }
            }
        }
        for (int64_t b = 0; b < batch; b++) y[b * ldy + r] = hsum(acc[b]);
    }
}

AVX2 static void dense_gemv_batch(const mk_dense_matrix *w, const float *x, int64_t ldx, int64_t batch,
                                  float *y, int64_t ldy, int64_t r0, int64_t r1) {
    const int64_t n = w->cols, n8 = n & ~(int64_t)7;
    const size_t esize = w->dtype == MK_DTYPE_F32 ? 4 : 2;
    for (int64_t r = r0; r < r1; r++) {
        const void *row = (const char *)w->data + (size_t)(r * n) * esize;
        __m256 acc[MK_MAX_BATCH];
        for (int64_t b = 0; b < batch; b++) acc[b] = _mm256_setzero_ps();
        for (int64_t c = 0; c < n8; c += 8) {
            const __m256 v = load8(row, w->dtype, c);
            for (int64_t b = 0; b < batch; b++) acc[b] = _mm256_fmadd_ps(v, _mm256_loadu_ps(x + b * ldx + c), acc[b]);
        }
        float tail[8];
        if (n8 < n) mk_convert_to_f32((const char *)row + (size_t)n8 * esize, w->dtype, n - n8, tail);
        for (int64_t b = 0; b < batch; b++) {
            float s = hsum(acc[b]);
            for (int64_t c = n8; c < n; c++) s += tail[c - n8] * x[b * ldx + c];
            y[b * ldy + r] = s;
        }
    }
}

const mk_matrix_kernels mk_avx2_kernels = {
    .name = "avx2",
    .level = MK_ISA_AVX2,
    .dense_gemv = dense_gemv,
    .q4_gemv = q4_gemv,
    .dense_gemv_batch = dense_gemv_batch,
    .q4_gemv_batch = q4_gemv_batch,
    .dense_rows_to_f32 = dense_rows_to_f32,
    .q4_rows_to_f32 = q4_rows_to_f32,
};
#endif
