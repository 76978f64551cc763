// Weights repacked for the int8 path, and the products over them.
//
// A packed matrix is cut into panels of 16 rows and, along the columns, blocks of 64.
// For every (panel, block) it stores 16 uint8 block scales (one per row) and the
// weights in the order vpdpbusd consumes them: one 64-byte vector holds 4 consecutive columns of
// all 16 rows (byte 4i + j is row i, column 4q + j of the block), so one instruction
// multiplies 16 rows by 4 broadcast activations and no horizontal sums are needed.
//
//   bits 8: 16 such vectors (q = 0..15) of uint8 (int8 value + 128): 1024 bytes.
//   bits 4: 8 vectors of nibbles (512 bytes); vector c holds column group q = c in its
//           low nibbles and q = c + 8 in its high nibbles, as codes into `lut`.
//
// Each row has one float scale: a block's scale is its uint8 times the row's scale, so
// the scales cost 1 byte per 64 weights (a 4-bit matrix reads 4.125 bits a weight). The
// uint8 is the block's absmax as a fraction of the row's largest (at most 0.2% off for
// blocks above a quarter of it, against the 4-bit codes' own ~10%).
//
// Reading one packed panel serves every sequence of a batch; the same bytes feed the
// prefill GEMM.
#include "internal.h"
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>

int mk_packed_fits(int64_t cols) { return cols > 0 && cols % 64 == 0; }

int64_t mk_packed_panels(int64_t rows) { return (rows + 15) / 16; }

int64_t mk_packed_code_bytes(int64_t rows, int64_t cols, int32_t bits) {
    return mk_packed_panels(rows) * (cols / 64) * (bits == 4 ? 512 : 1024);
}

int64_t mk_packed_scale_count(int64_t rows, int64_t cols) { return mk_packed_panels(rows) * (cols / 64) * 16; }

int64_t mk_packed_row_count(int64_t rows) { return mk_packed_panels(rows) * 16; }

/// One row's block scales as uint8 fractions of `largest`, stored as largest / 255.
/// Non-finite or negative absmax (never written by bitsandbytes) count as zero.
static float row_scale_of(float largest) { return largest > 0 && isfinite(largest) ? largest / 255.0f : 0.0f; }

static uint8_t block_scale(float value, float row_scale, int round_up) {
    if (!(row_scale > 0) || !(value > 0)) return 0;
    const float units = value / row_scale;
    long q = round_up ? (long)ceilf(units) : lrintf(units);
    return (uint8_t)(q > 255 ? 255 : q < 0 ? 0 : q);
}

/// Scales of rows [r0, r0 + 16) over all blocks: row_scales[16] and, for block b,
/// scales[b * 16 + i] (zero for missing rows).
static void q4_panel_scales(const mk_q4_matrix *w, int64_t r0, uint8_t *scales, float row_scales[16]) {
    const int64_t blocks = w->cols / 64;
    for (int64_t i = 0; i < 16; i++) {
        const int64_t r = r0 + i;
        float largest = 0;
        if (r < w->rows)
            for (int64_t b = 0; b < blocks; b++) largest = fmaxf(largest, w->absmax[(r * w->cols + 64 * b) / w->blocksize]);
        row_scales[i] = row_scale_of(largest);
        for (int64_t b = 0; b < blocks; b++)
            scales[b * 16 + i] = r < w->rows ? block_scale(w->absmax[(r * w->cols + 64 * b) / w->blocksize], row_scales[i], 0) : 0;
    }
}

/// The code of element (r, k) of a bitsandbytes matrix: two a byte, the first high.
static inline uint8_t q4_code(const mk_q4_matrix *w, int64_t r, int64_t k) {
    const int64_t e = r * w->cols + k;
    const uint8_t byte = w->codes[e / 2];
    return e % 2 == 0 ? byte >> 4 : byte & 15;
}

static void pack_q4_scalar(const mk_q4_matrix *w, int64_t p0, int64_t p1,
                           uint8_t *codes, uint8_t *scales, float *row_scales) {
    const int64_t blocks = w->cols / 64;
    for (int64_t p = p0; p < p1; p++) {
        for (int64_t b = 0; b < blocks; b++) {
            uint8_t *out = codes + (p * blocks + b) * 512;
            for (int c = 0; c < 8; c++)
                for (int i = 0; i < 16; i++)
                    for (int j = 0; j < 4; j++) {
                        const int64_t r = p * 16 + i, k = 64 * b + 4 * c + j;
                        const uint8_t lo = r < w->rows ? q4_code(w, r, k) : 0;
                        const uint8_t hi = r < w->rows ? q4_code(w, r, k + 32) : 0;
                        out[c * 64 + 4 * i + j] = (uint8_t)(lo | hi << 4);
                    }
        }
        q4_panel_scales(w, p * 16, scales + p * blocks * 16, row_scales + p * 16);
    }
}

/// One panel of a dense matrix as int8 into `out` (blocks * 1024 bytes).
static void pack_dense_panel(const mk_dense_matrix *w, int64_t p, uint8_t *out_panel, uint8_t *scales,
                             float *row_scales, float *rows_f32) {
    const int64_t n = w->cols, blocks = n / 64;
    const int64_t r0 = p * 16, count = w->rows - r0 < 16 ? w->rows - r0 : 16;
    mk_dense_rows_to_f32(w, r0, r0 + count, rows_f32);
    for (int64_t i = 0; i < 16; i++) {
        float *row_scale = row_scales + p * 16 + i;
        if (i >= count) {
            *row_scale = 0;
            for (int64_t b = 0; b < blocks; b++) {
                scales[(p * blocks + b) * 16 + i] = 0;
                for (int q = 0; q < 16; q++) memset(out_panel + b * 1024 + q * 64 + 4 * i, 128, 4);
            }
            continue;
        }
        const float *x = rows_f32 + i * n;
        float largest = 0;
        for (int64_t k = 0; k < n; k++) largest = fmaxf(largest, fabsf(x[k]));
        *row_scale = row_scale_of(largest / 127.0f);
        for (int64_t b = 0; b < blocks; b++) {
            uint8_t *out = out_panel + b * 1024;
            float amax = 0;
            for (int k = 0; k < 64; k++) amax = fmaxf(amax, fabsf(x[64 * b + k]));
            // Rounded up, so no weight is clipped; the weights are quantized against
            // the scale as stored, so the two agree.
            const uint8_t s = block_scale(amax / 127.0f, *row_scale, 1);
            scales[(p * blocks + b) * 16 + i] = s;
            const float stored = (float)s * *row_scale;
            const float inverse = stored > 0 ? 1.0f / stored : 0.0f;
            for (int k = 0; k < 64; k++) {
                long v = lrintf(x[64 * b + k] * inverse);
                v = v > 127 ? 127 : v < -127 ? -127 : v;
                out[(k / 4) * 64 + 4 * i + k % 4] = (uint8_t)(v + 128);
            }
        }
    }
}

void mk_pack_dense_q8(const mk_dense_matrix *w, int64_t p0, int64_t p1,
                      uint8_t *codes, uint8_t *scales, float *row_scales, float *rows_f32) {
    for (int64_t p = p0; p < p1; p++)
        pack_dense_panel(w, p, codes + p * (w->cols / 64) * 1024, scales, row_scales, rows_f32);
}

void mk_pack_dense_q4(const mk_dense_matrix *w, int64_t p0, int64_t p1, uint8_t *codes, uint8_t *scales,
                      float *row_scales, float *rows_f32, uint8_t *panel_q8) {
    const int64_t blocks = w->cols / 64;
    for (int64_t p = p0; p < p1; p++) {
        pack_dense_panel(w, p, panel_q8, scales, row_scales, rows_f32);
        for (int64_t b = 0; b < blocks; b++) {
            const uint8_t *q8 = panel_q8 + b * 1024;
            uint8_t *out = codes + (p * blocks + b) * 512;
            for (int c = 0; c < 8; c++)
                for (int e = 0; e < 64; e++)
                    out[c * 64 + e] = (uint8_t)(q8[c * 64 + e] >> 4 | (q8[(c + 8) * 64 + e] & 0xF0));
        }
    }
}

void mk_dense_q4_lut(uint8_t lut[16]) {
    for (int c = 0; c < 16; c++) lut[c] = (uint8_t)(16 * c + 8);
}

int64_t mk_packed_scratch_bytes(int64_t cols) { return cols * 16 + 128; }

/// The uint8 weight of row i, column k of block b in panel p.
static inline uint8_t packed_weight(const mk_packed_matrix *w, int64_t p, int64_t b, int i, int k) {
    const int64_t blocks = w->cols / 64;
    const int q = k / 4, j = k % 4;
    if (w->bits == 8) return w->codes[(p * blocks + b) * 1024 + q * 64 + 4 * i + j];
    const uint8_t byte = w->codes[(p * blocks + b) * 512 + (q % 8) * 64 + 4 * i + j];
    return w->lut[q < 8 ? byte & 15 : byte >> 4];
}

/// The definition, one element at a time: what the VNNI kernel computes, up to the
/// order of float operations.
static void gemm_scalar(const mk_packed_matrix *w, const mk_q8_rows *x, float *y, int64_t ldy, int64_t p0, int64_t p1) {
    const int64_t n = w->cols, blocks = n / 64;
    for (int64_t p = p0; p < p1; p++)
        for (int i = 0; i < 16 && p * 16 + i < w->rows; i++)
            for (int64_t t = 0; t < x->rows; t++) {
                float sum = 0;
                for (int64_t b = 0; b < blocks; b++) {
                    int32_t dot = x->neg_corr[t * blocks + b];
                    for (int k = 0; k < 64; k++) dot += (int32_t)packed_weight(w, p, b, i, k) * x->q[t * n + 64 * b + k];
                    const float s = (float)w->scales[(p * blocks + b) * 16 + i];
                    sum += (float)dot * (s * x->scale[t * blocks + b]);
                }
                y[t * ldy + p * 16 + i] = sum * (w->row_scales[p * 16 + i] * w->out_scale);
            }
}

#if defined(__x86_64__)
#include <immintrin.h>
#define VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,f16c")))
#define VNNI_VBMI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,f16c")))
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,f16c")))

/// Pack 16 rows of 4-bit codes: each row is spread to one code per byte, then the 4-byte
/// column groups of the 16 rows are gathered into one vector and two groups merged.
AVX512 static void pack_q4_avx512(const mk_q4_matrix *w, int64_t p0, int64_t p1,
                                uint8_t *codes, uint8_t *scales, float *row_scales, uint8_t *rows) {
    const int64_t n = w->cols, blocks = n / 64;
    const __m512i nibble = _mm512_set1_epi8(0x0F);
    const __m512i index = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                             _mm512_set1_epi32((int)n));
    for (int64_t p = p0; p < p1; p++) {
        for (int64_t i = 0; i < 16; i++) {
            const int64_t r = p * 16 + i;
            uint8_t *row = rows + i * n;
            if (r >= w->rows || n % 128 != 0) {  // past the matrix, or a width the 128-code loop below does not cover
                for (int64_t k = 0; k < n; k++) row[k] = r < w->rows ? q4_code(w, r, k) : 0;
                continue;
            }
            const uint8_t *src = w->codes + r * n / 2;
            for (int64_t c = 0; c < n / 2; c += 64) {
                const __m512i bytes = _mm512_loadu_si512(src + c);
                const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(bytes, 4), nibble);
                const __m512i lo = _mm512_and_si512(bytes, nibble);
                const __m512i a = _mm512_unpacklo_epi8(hi, lo), b = _mm512_unpackhi_epi8(hi, lo);
                // unpack works per 128-bit lane: a holds elements [0,16) [32,48) [64,80) [96,112), b the others
                _mm512_storeu_si512(row + 2 * c, _mm512_permutex2var_epi64(a, _mm512_set_epi64(11, 10, 3, 2, 9, 8, 1, 0), b));
                _mm512_storeu_si512(row + 2 * c + 64, _mm512_permutex2var_epi64(a, _mm512_set_epi64(15, 14, 7, 6, 13, 12, 5, 4), b));
            }
        }
        for (int64_t b = 0; b < blocks; b++) {
            uint8_t *out = codes + (p * blocks + b) * 512;
            for (int c = 0; c < 8; c++) {
                const __m512i lo = _mm512_i32gather_epi32(index, rows + 64 * b + 4 * c, 1);
                const __m512i hi = _mm512_i32gather_epi32(index, rows + 64 * b + 4 * c + 32, 1);
                _mm512_storeu_si512(out + c * 64, _mm512_or_si512(lo, _mm512_slli_epi16(hi, 4)));
            }
        }
        q4_panel_scales(w, p * 16, scales + p * blocks * 16, row_scales + p * 16);
    }
}

VNNI static inline __m512i broadcast_word(const int8_t *p) {
    int32_t word;
    memcpy(&word, p, 4);
    return _mm512_set1_epi32(word);
}

/// End of a block of 64 columns: acc[t] += float(dot[t]) * row scales * activation scale.
VNNI static inline __attribute__((always_inline)) void rescale_block(
    const uint8_t *scales, const mk_q8_rows *x, int64_t t0, const int T, int64_t b, const __m512i *dot, __m512 *acc) {
    const int64_t blocks = x->cols / 64;
    const __m512 ws = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)scales)));
    for (int t = 0; t < T; t++) {
        const __m512 s = _mm512_mul_ps(ws, _mm512_set1_ps(x->scale[(t0 + t) * blocks + b]));
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[t]), s, acc[t]);
    }
}

/// Y for T activation rows from t0 and panel p: acc[t] times the row and output
/// scales, masked to the matrix's rows.
VNNI static inline __attribute__((always_inline)) void store_tile(
    const mk_packed_matrix *w, int64_t p, const __m512 *acc, int64_t t0, const int T, float *y, int64_t ldy) {
    const __m512 out = _mm512_mul_ps(_mm512_loadu_ps(w->row_scales + p * 16), _mm512_set1_ps(w->out_scale));
    const int64_t valid_rows = w->rows - p * 16 < 16 ? w->rows - p * 16 : 16;
    const __mmask16 valid = (__mmask16)((1u << valid_rows) - 1);
    for (int t = 0; t < T; t++) _mm512_mask_storeu_ps(y + (t0 + t) * ldy + p * 16, valid, _mm512_mul_ps(acc[t], out));
}

/// T activation rows (from t0) against one panel of 4-bit codes, decoded in registers.
/// With few rows, two dot-product chains per row (low and high nibbles) hide vpdpbusd's
/// latency; with more, one chain per row keeps every accumulator in a register.
///
/// `vbmi`: look the codes up with vpermb instead of vpshufb. vpermb indexes 64 bytes by
/// the low 6 bits, so with the 16-entry table repeated in each lane the neighbouring
/// nibble's bits do not matter and neither nibble needs its mask: 5 vector operations a
/// line instead of 7, on a core (Zen 4) that issues two 512-bit operations a cycle and
/// one lookup or vpdpbusd, so the product computes less of the time it streams.
/// (Not always_inline: it is inlined where tile_q4 lands in a VBMI function, and the
/// vpshufb instantiation, compiled without VBMI, never calls it.)
VNNI_VBMI static inline __m512i lookup_vpermb(__m512i table, __m512i v) { return _mm512_permutexvar_epi8(v, table); }

VNNI static inline __attribute__((always_inline)) __m512i lookup_low(__m512i table, __m512i v, const int vbmi) {
    return vbmi ? lookup_vpermb(table, v) : _mm512_shuffle_epi8(table, _mm512_and_si512(v, _mm512_set1_epi8(0x0F)));
}

VNNI static inline __attribute__((always_inline)) void tile_q4(
    const mk_packed_matrix *w, int64_t p, const mk_q8_rows *x, int64_t t0, const int T, float *y, int64_t ldy,
    const int vbmi, const int64_t prefetch, const int level) {
    const int64_t n = w->cols, blocks = n / 64;
    const __m512i table = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)w->lut));
    const uint8_t *codes = w->codes + p * blocks * 512;
    const uint8_t *scales = w->scales + p * blocks * 16;
    const int split = T <= 4;
    __m512 acc[8];
    for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < blocks; b++) {
        __m512i lo_dot[8], hi_dot[4];
        const int8_t *xq = x->q + t0 * n + 64 * b;
        for (int t = 0; t < T; t++) lo_dot[t] = _mm512_set1_epi32(x->neg_corr[(t0 + t) * blocks + b]);
        if (split)
            for (int t = 0; t < T; t++) hi_dot[t] = _mm512_setzero_si512();
        for (int c = 0; c < 8; c++) {
            if (prefetch) mk_prefetch_weights(codes + (b * 8 + c) * 64 + prefetch, level);
            const __m512i v = _mm512_loadu_si512(codes + (b * 8 + c) * 64);
            const __m512i lo = lookup_low(table, v, vbmi);
            const __m512i hi = lookup_low(table, _mm512_srli_epi16(v, 4), vbmi);
            for (int t = 0; t < T; t++) {
                lo_dot[t] = _mm512_dpbusd_epi32(lo_dot[t], lo, broadcast_word(xq + t * n + 4 * c));
                if (split) hi_dot[t] = _mm512_dpbusd_epi32(hi_dot[t], hi, broadcast_word(xq + t * n + 4 * c + 32));
                else lo_dot[t] = _mm512_dpbusd_epi32(lo_dot[t], hi, broadcast_word(xq + t * n + 4 * c + 32));
            }
        }
        if (split)
            for (int t = 0; t < T; t++) lo_dot[t] = _mm512_add_epi32(lo_dot[t], hi_dot[t]);
        rescale_block(scales + b * 16, x, t0, T, b, lo_dot, acc);
    }
    store_tile(w, p, acc, t0, T, y, ldy);
}

/// T activation rows against one panel of uint8 weights ([blocks][16][64] bytes). With
/// few rows, two dot-product chains per row hide vpdpbusd's latency; with more, the rows
/// interleave on their own and one chain keeps all accumulators in registers.
VNNI static inline __attribute__((always_inline)) void tile_u8(
    const mk_packed_matrix *w, const uint8_t *panel, int64_t p, const mk_q8_rows *x, int64_t t0, const int T,
    float *y, int64_t ldy, const int64_t prefetch, const int level) {
    const int64_t n = w->cols, blocks = n / 64;
    const uint8_t *scales = w->scales + p * blocks * 16;
    const int split = T <= 4;
    __m512 acc[12];
    for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < blocks; b++) {
        __m512i even[12], odd[4];
        const int8_t *xq = x->q + t0 * n + 64 * b;
        for (int t = 0; t < T; t++) even[t] = _mm512_set1_epi32(x->neg_corr[(t0 + t) * blocks + b]);
        if (split)
            for (int t = 0; t < T; t++) odd[t] = _mm512_setzero_si512();
        for (int q = 0; q < 16; q += 2) {
            if (prefetch) {
                mk_prefetch_weights(panel + (b * 16 + q) * 64 + prefetch, level);
                mk_prefetch_weights(panel + (b * 16 + q + 1) * 64 + prefetch, level);
            }
            const __m512i v0 = _mm512_loadu_si512(panel + (b * 16 + q) * 64);
            const __m512i v1 = _mm512_loadu_si512(panel + (b * 16 + q + 1) * 64);
            for (int t = 0; t < T; t++) {
                even[t] = _mm512_dpbusd_epi32(even[t], v0, broadcast_word(xq + t * n + 4 * q));
                if (split) odd[t] = _mm512_dpbusd_epi32(odd[t], v1, broadcast_word(xq + t * n + 4 * q + 4));
                else even[t] = _mm512_dpbusd_epi32(even[t], v1, broadcast_word(xq + t * n + 4 * q + 4));
            }
        }
        if (split)
            for (int t = 0; t < T; t++) even[t] = _mm512_add_epi32(even[t], odd[t]);
        rescale_block(scales + b * 16, x, t0, T, b, even, acc);
    }
    store_tile(w, p, acc, t0, T, y, ldy);
}

/// Spread one panel of 4-bit codes to uint8 weights through the table (for many tokens).
VNNI static void unpack_q4_panel(const mk_packed_matrix *w, int64_t p, uint8_t *panel) {
    const int64_t blocks = w->cols / 64;
    const __m512i table = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)w->lut));
    const __m512i nibble = _mm512_set1_epi8(0x0F);
    const uint8_t *codes = w->codes + p * blocks * 512;
    for (int64_t b = 0; b < blocks; b++)
        for (int c = 0; c < 8; c++) {
            const __m512i v = _mm512_loadu_si512(codes + (b * 8 + c) * 64);
            _mm512_store_si512(panel + (b * 16 + c) * 64, _mm512_shuffle_epi8(table, _mm512_and_si512(v, nibble)));
            _mm512_store_si512(panel + (b * 16 + c + 8) * 64,
                               _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srli_epi16(v, 4), nibble)));
        }
}

#define TOKENS 12

/// `prefetch`: how far ahead to ask for the panel's lines, when it is streamed from the
/// packed weights (decode of an int8 matrix); 0 for a decoded copy in scratch.
VNNI static void tile_u8_any(const mk_packed_matrix *w, const uint8_t *panel, int64_t p, const mk_q8_rows *x,
                             int64_t t0, int64_t T, float *y, int64_t ldy, int64_t prefetch, int level) {
    switch (T) {
    case 1: tile_u8(w, panel, p, x, t0, 1, y, ldy, prefetch, level); break;
    case 2: tile_u8(w, panel, p, x, t0, 2, y, ldy, prefetch, level); break;
    case 3: tile_u8(w, panel, p, x, t0, 3, y, ldy, prefetch, level); break;
    case 4: tile_u8(w, panel, p, x, t0, 4, y, ldy, prefetch, level); break;
    case 5: tile_u8(w, panel, p, x, t0, 5, y, ldy, prefetch, level); break;
    case 6: tile_u8(w, panel, p, x, t0, 6, y, ldy, prefetch, level); break;
    case 7: tile_u8(w, panel, p, x, t0, 7, y, ldy, prefetch, level); break;
    case 8: tile_u8(w, panel, p, x, t0, 8, y, ldy, prefetch, level); break;
    case 9: tile_u8(w, panel, p, x, t0, 9, y, ldy, prefetch, level); break;
    case 10: tile_u8(w, panel, p, x, t0, 10, y, ldy, prefetch, level); break;
    case 11: tile_u8(w, panel, p, x, t0, 11, y, ldy, prefetch, level); break;
    default: tile_u8(w, panel, p, x, t0, TOKENS, y, ldy, prefetch, level); break;
    }
}

#define TILE_Q4_ANY(NAME, TARGET, VBMI)                                                                     \
    TARGET static void NAME(const mk_packed_matrix *w, int64_t p, const mk_q8_rows *x, int64_t T, float *y,     \
                          int64_t ldy, int64_t pf, int lv) {                                                  \
        switch (T) {                                                                                          \
        case 1: tile_q4(w, p, x, 0, 1, y, ldy, VBMI, pf, lv); break;                                              \
        case 2: tile_q4(w, p, x, 0, 2, y, ldy, VBMI, pf, lv); break;                                              \
        case 3: tile_q4(w, p, x, 0, 3, y, ldy, VBMI, pf, lv); break;                                              \
        case 4: tile_q4(w, p, x, 0, 4, y, ldy, VBMI, pf, lv); break;                                              \
        case 5: tile_q4(w, p, x, 0, 5, y, ldy, VBMI, pf, lv); break;                                              \
        case 6: tile_q4(w, p, x, 0, 6, y, ldy, VBMI, pf, lv); break;                                              \
        case 7: tile_q4(w, p, x, 0, 7, y, ldy, VBMI, pf, lv); break;                                              \
        default: tile_q4(w, p, x, 0, 8, y, ldy, VBMI, pf, lv); break;                                             \
        }                                                                                                     \
    }
TILE_Q4_ANY(tile_q4_any_pshufb, VNNI, 0)
TILE_Q4_ANY(tile_q4_any_vpermb, VNNI_VBMI, 1)

/// `vbmi`: the decode tiles look codes up with vpermb (tile_q4).
VNNI static void gemm_vnni(const mk_packed_matrix *w, const mk_q8_rows *x, float *y, int64_t ldy,
                           int64_t p0, int64_t p1, void *scratch, int vbmi) {
    const int64_t blocks = w->cols / 64;
    uint8_t *unpacked = (uint8_t *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    const int64_t prefetch = mk_prefetch_distance();
    const int level = mk_prefetch_level();
    for (int64_t p = p0; p < p1; p++) {
        if (w->bits == 4 && x->rows <= 8) {
            if (vbmi) tile_q4_any_vpermb(w, p, x, x->rows, y, ldy, prefetch, level);
            else tile_q4_any_pshufb(w, p, x, x->rows, y, ldy, prefetch, level);
            continue;
        }
        const uint8_t *panel = w->codes + p * blocks * 1024;
        if (w->bits == 4) {
            unpack_q4_panel(w, p, unpacked);
            panel = unpacked;
        }
        for (int64_t t0 = 0; t0 < x->rows; t0 += TOKENS) {
            const int64_t T = x->rows - t0 < TOKENS ? x->rows - t0 : TOKENS;
            tile_u8_any(w, panel, p, x, t0, T, y, ldy, w->bits == 8 && x->rows <= 8 ? prefetch : 0, level);
        }
    }
}
#endif

/// Whether the VNNI path may look codes up with vpermb where the CPU has AVX-512 VBMI:
/// 1 unless MAMBAD_VBMI=0 or mk_q8_allow_vbmi(0) (to measure or test the vpshufb lookup).
static _Atomic int vbmi_allowed = -1;

void mk_q8_allow_vbmi(int allowed) { atomic_store(&vbmi_allowed, allowed ? 1 : 0); }

static int vbmi_permitted(void) {
    int allowed = atomic_load(&vbmi_allowed);
    if (allowed < 0) {
        const char *setting = getenv("MAMBAD_VBMI");
        allowed = setting == NULL || strcmp(setting, "0") != 0;
        atomic_store(&vbmi_allowed, allowed);
    }
    return allowed;
}

/// Which product kernel runs: 4 = AVX-512 VNNI with VBMI lookups, 3 = AVX-512 VNNI,
/// 2 = AVX2, 1 = the portable definition.
static int packed_path(void) {
    const int isa = mk_isa_level();
    if (isa == MK_ISA_SCALAR) return 1;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (isa == MK_ISA_AVX512 && __builtin_cpu_supports("avx512vnni"))
        return __builtin_cpu_supports("avx512vbmi") && vbmi_permitted() ? 4 : 3;
#endif
    return 2;
}

int mk_q8_available(void) { return packed_path() > 1; }

int mk_packed_gemm_needs_scratch(int64_t rows) {
    switch (packed_path()) {
    case 4:
    case 3: return rows > 8;
    case 2: return 1;
    default: return 0;
    }
}

const char *mk_q8_path(void) {
    switch (packed_path()) {
    case 4: return "avx512-vnni-vbmi";
    case 3: return "avx512-vnni";
    case 2: return "avx2";
    default: return "scalar";
    }
}

void mk_pack_q4(const mk_q4_matrix *w, int64_t p0, int64_t p1,
                uint8_t *codes, uint8_t *scales, float *row_scales, void *scratch) {
#if defined(__x86_64__)
    if (mk_isa_level() == MK_ISA_AVX512) {
        pack_q4_avx512(w, p0, p1, codes, scales, row_scales, (uint8_t *)scratch);
        return;
    }
#endif
    (void)scratch;
    pack_q4_scalar(w, p0, p1, codes, scales, row_scales);
}

void mk_packed_gemm(const mk_packed_matrix *w, const mk_q8_rows *x, float *y, int64_t ldy,
                    int64_t p0, int64_t p1, void *scratch) {
    switch (packed_path()) {
#if defined(__x86_64__)
    case 4: gemm_vnni(w, x, y, ldy, p0, p1, scratch, 1); return;
    case 3: gemm_vnni(w, x, y, ldy, p0, p1, scratch, 0); return;
    case 2: mk_packed_gemm_avx2(w, x, y, ldy, p0, p1, scratch); return;
#endif
    default: gemm_scalar(w, x, y, ldy, p0, p1); return;
    }
}
