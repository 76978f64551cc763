// AVX-512 matrix kernels. The 4-bit path decodes exactly: each block's 16 possible
// values are computed and rounded once into one zmm register, then every code is a
// vpermps lookup into it, so results equal the scalar path's up to summation order.
#include "internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,f16c,fma")))

AVX512 static inline __m512 block_lut(const mk_q4_matrix *w, int64_t block) {
    __m512 v = _mm512_mul_ps(_mm512_loadu_ps(w->table), _mm512_set1_ps(w->absmax[block]));
    if (w->rounding == MK_ROUND_BF16) {
        __m512i u = _mm512_castps_si512(v);
        __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
        u = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7FFF), lsb));
        v = _mm512_castsi512_ps(_mm512_and_si512(u, _mm512_set1_epi32((int)0xFFFF0000u)));
    } else if (w->rounding == MK_ROUND_F16) {
        v = _mm512_cvtph_ps(_mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
    return v;
}

/// The 64 weights of elements [e, e + 64) (e even), as four vectors of 16.
AVX512 static inline void decode64(const mk_q4_matrix *w, __m512 lut, int64_t e, __m512 out[4]) {
    const __m256i bytes = _mm256_loadu_si256((const __m256i *)(w->codes + (e >> 1)));
    const __m256i mask = _mm256_set1_epi8(0x0F);
    const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(bytes, 4), mask);
    const __m256i lo = _mm256_and_si256(bytes, mask);
    const __m256i a = _mm256_unpacklo_epi8(hi, lo);  // elements 0-15 | 32-47
    const __m256i b = _mm256_unpackhi_epi8(hi, lo);  // elements 16-31 | 48-63
    out[0] = _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(_mm256_castsi256_si128(a)), lut);
    out[1] = _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(_mm256_castsi256_si128(b)), lut);
    out[2] = _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(_mm256_extracti128_si256(a, 1)), lut);
    out[3] = _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(_mm256_extracti128_si256(b, 1)), lut);
}

AVX512 static void q4_gemv(const mk_q4_matrix *w, const float *x, float *y, int64_t r0, int64_t r1) {
    if (!mk_q4_blocks_align(w)) { mk_scalar_kernels.q4_gemv(w, x, y, r0, r1); return; }
    const int64_t n = w->cols, bs = w->blocksize;
    for (int64_t r = r0; r < r1; r++) {
        __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
        __m512 acc2 = _mm512_setzero_ps(), acc3 = _mm512_setzero_ps();
        const int64_t base = r * n;
        for (int64_t c = 0; c < n; c += bs) {
            const __m512 lut = block_lut(w, (base + c) / bs);
            for (int64_t k = c; k < c + bs; k += 64) {
                __m512 v[4];
                decode64(w, lut, base + k, v);
                acc0 = _mm512_fmadd_ps(v[0], _mm512_loadu_ps(x + k), acc0);
                acc1 = _mm512_fmadd_ps(v[1], _mm512_loadu_ps(x + k + 16), acc1);
                acc2 = _mm512_fmadd_ps(v[2], _mm512_loadu_ps(x + k + 32), acc2);
                acc3 = _mm512_fmadd_ps(v[3], _mm512_loadu_ps(x + k + 48), acc3);
            }
        }
        y[r] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_add_ps(acc2, acc3)));
    }
}

AVX512 static void q4_rows_to_f32(const mk_q4_matrix *w, int64_t r0, int64_t r1, float *out) {
    if (!mk_q4_blocks_align(w)) { mk_scalar_kernels.q4_rows_to_f32(w, r0, r1, out); return; }
    const int64_t bs = w->blocksize, begin = r0 * w->cols, end = r1 * w->cols;
    for (int64_t e = begin; e < end; e += bs) {
        const __m512 lut = block_lut(w, e / bs);
        for (int64_t k = e; k < e + bs; k += 64) {
            __m512 v[4];
            decode64(w, lut, k, v);
            float *o = out + (k - begin);
            _mm512_storeu_ps(o, v[0]);
            _mm512_storeu_ps(o + 16, v[1]);
            _mm512_storeu_ps(o + 32, v[2]);
            _mm512_storeu_ps(o + 48, v[3]);
        }
    }
}

/// 16 elements of a dense row as floats.
AVX512 static inline __m512 load16(const void *data, int32_t dtype, int64_t i) {
    if (dtype == MK_DTYPE_F32) return _mm512_loadu_ps((const float *)data + i);
    const __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)data + i));
    if (dtype == MK_DTYPE_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

AVX512 static void dense_gemv(const mk_dense_matrix *w, const float *x, float *y, int64_t r0, int64_t r1) {
    const int64_t n = w->cols, n64 = n & ~(int64_t)63;
    const size_t esize = w->dtype == MK_DTYPE_F32 ? 4 : 2;
    for (int64_t r = r0; r < r1; r++) {
        const void *row = (const char *)w->data + (size_t)(r * n) * esize;
        __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
        __m512 acc2 = _mm512_setzero_ps(), acc3 = _mm512_setzero_ps();
        for (int64_t c = 0; c < n64; c += 64) {
            acc0 = _mm512_fmadd_ps(load16(row, w->dtype, c), _mm512_loadu_ps(x + c), acc0);
            acc1 = _mm512_fmadd_ps(load16(row, w->dtype, c + 16), _mm512_loadu_ps(x + c + 16), acc1);
            acc2 = _mm512_fmadd_ps(load16(row, w->dtype, c + 32), _mm512_loadu_ps(x + c + 32), acc2);
            acc3 = _mm512_fmadd_ps(load16(row, w->dtype, c + 48), _mm512_loadu_ps(x + c + 48), acc3);
        }
        float s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_add_ps(acc2, acc3)));
        if (n64 < n) {
            float tail[64];
            mk_convert_to_f32((const char *)row + (size_t)n64 * esize, w->dtype, n - n64, tail);
            for (int64_t c = n64; c < n; c++) s += tail[c - n64] * x[c];
        }
        y[r] = s;
    }
}

AVX512 static void dense_rows_to_f32(const mk_dense_matrix *w, int64_t r0, int64_t r1, float *out) {
    const size_t esize = w->dtype == MK_DTYPE_F32 ? 4 : 2;
    const void *src = (const char *)w->data + (size_t)(r0 * w->cols) * esize;
    const int64_t count = (r1 - r0) * w->cols, count16 = count & ~(int64_t)15;
    for (int64_t i = 0; i < count16; i += 16) _mm512_storeu_ps(out + i, load16(src, w->dtype, i));
    mk_convert_to_f32((const char *)src + (size_t)count16 * esize, w->dtype, count - count16, out + count16);
}

AVX512 static void q4_gemv_batch(const mk_q4_matrix *w, const float *x, int64_t ldx, int64_t batch,
                                 float *y, int64_t ldy, int64_t r0, int64_t r1) {
    if (!mk_q4_blocks_align(w)) { mk_scalar_kernels.q4_gemv_batch(w, x, ldx, batch, y, ldy, r0, r1); return; }
    const int64_t n = w->cols, bs = w->blocksize;
    for (int64_t r = r0; r < r1; r++) {
        __m512 acc[MK_MAX_BATCH];
        for (int64_t b = 0; b < batch; b++) acc[b] = _mm512_setzero_ps();
        const int64_t base = r * n;
        for (int64_t c = 0; c < n; c += bs) {
            const __m512 lut = block_lut(w, (base + c) / bs);
            for (int64_t k = c; k < c + bs; k += 64) {
                __m512 v[4];
                decode64(w, lut, base + k, v);
                for (int64_t b = 0; b < batch; b++) {
                    const float *xb = x + b * ldx + k;
                    __m512 a = _mm512_fmadd_ps(v[0], _mm512_loadu_ps(xb), acc[b]);
                    __m512 a2 = _mm512_mul_ps(v[1], _mm512_loadu_ps(xb + 16));
                    a = _mm512_fmadd_ps(v[2], _mm512_loadu_ps(xb + 32), a);
                    a2 = _mm512_fmadd_ps(v[3], _mm512_loadu_ps(xb + 48), a2);
                    acc[b] = _mm512_add_ps(a, a2);
                }
            }
        }
        for (int64_t b = 0; b < batch; b++) y[b * ldy + r] = _mm512_reduce_add_ps(acc[b]);
    }
}

AVX512 static void dense_gemv_batch(const mk_dense_matrix *w, const float *x, int64_t ldx, int64_t batch,
                                    float *y, int64_t ldy, int64_t r0, int64_t r1) {
    const int64_t n = w->cols, n16 = n & ~(int64_t)15;
    const size_t esize = w->dtype == MK_DTYPE_F32 ? 4 : 2;
    for (int64_t r = r0; r < r1; r++) {
        const void *row = (const char *)w->data + (size_t)(r * n) * esize;
        __m512 acc[MK_MAX_BATCH];
        for (int64_t b = 0; b < batch; b++) acc[b] = _mm512_setzero_ps();
        for (int64_t c = 0; c < n16; c += 16) {
            const __m512 v = load16(row, w->dtype, c);
            for (int64_t b = 0; b < batch; b++) acc[b] = _mm512_fmadd_ps(v, _mm512_loadu_ps(x + b * ldx + c), acc[b]);
        }
        float tail[16];
        if (n16 < n) mk_convert_to_f32((const char *)row + (size_t)n16 * esize, w->dtype, n - n16, tail);
        for (int64_t b = 0; b < batch; b++) {
            float s = _mm512_reduce_add_ps(acc[b]);
            for (int64_t c = n16; c < n; c++) s += tail[c - n16] * x[b * ldx + c];
            y[b * ldy + r] = s;
        }
    }
}

const mk_matrix_kernels mk_avx512_kernels = {
    .name = "avx512",
    .level = MK_ISA_AVX512,
    .dense_gemv = dense_gemv,
    .q4_gemv = q4_gemv,
    .dense_gemv_batch = dense_gemv_batch,
    .q4_gemv_batch = q4_gemv_batch,
    .dense_rows_to_f32 = dense_rows_to_f32,
    .q4_rows_to_f32 = q4_rows_to_f32,
};
#endif
