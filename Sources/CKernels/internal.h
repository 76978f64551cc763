// Internal to CKernels: the per-ISA implementations behind the public entry points.
#ifndef MAMBAD_CKERNELS_INTERNAL_H
#define MAMBAD_CKERNELS_INTERNAL_H

#include "CKernels.h"
#include <string.h>

typedef struct {
    const char *name;
    int level;  // MK_ISA_SCALAR, MK_ISA_AVX2 or MK_ISA_AVX512
    void (*dense_gemv)(const mk_dense_matrix *, const float *, float *, int64_t, int64_t);
    void (*q4_gemv)(const mk_q4_matrix *, const float *, float *, int64_t, int64_t);
    void (*dense_gemv_batch)(const mk_dense_matrix *, const float *, int64_t, int64_t, float *, int64_t, int64_t, int64_t);
    void (*q4_gemv_batch)(const mk_q4_matrix *, const float *, int64_t, int64_t, float *, int64_t, int64_t, int64_t);
    void (*dense_rows_to_f32)(const mk_dense_matrix *, int64_t, int64_t, float *);
    void (*q4_rows_to_f32)(const mk_q4_matrix *, int64_t, int64_t, float *);
} mk_matrix_kernels;

enum { MK_ISA_SCALAR = 1, MK_ISA_AVX2 = 2, MK_ISA_AVX512 = 3 };

/// The active kernels' level (mk_isa as a number): the per-call checks of the scan,
/// conv, quantization and products compared mk_isa's string, ~0.2% of a decode step.
int mk_isa_level(void);

extern const mk_matrix_kernels mk_scalar_kernels;
#if defined(__x86_64__)
extern const mk_matrix_kernels mk_avx2_kernels;
extern const mk_matrix_kernels mk_avx512_kernels;
#endif

#if defined(__x86_64__)
/// The AVX2 product over packed weights (packed_avx2.c); scratch as for mk_packed_gemm.
void mk_packed_gemm_avx2(const mk_packed_matrix *w, const mk_q8_rows *x, float *y, int64_t ldy,
                         int64_t panel_begin, int64_t panel_end, void *scratch);
#endif

#if defined(__x86_64__)
#include <immintrin.h>

/// Ask for a line of weights ahead of its use, at `level` (MK_PREFETCH_L2 or
/// MK_PREFETCH_NONTEMPORAL; see CKernels.h). Weights are read once a step, so neither
/// level keeps them in L1 or L3 longer than needed: against T0 on sessions 3-5's host,
/// non-temporal was equal in the fast state and 0.4-2.7% faster in the slow one.
static inline __attribute__((always_inline)) void mk_prefetch_weights(const void *at, int level) {
    if (level == MK_PREFETCH_L2) _mm_prefetch((const char *)at, _MM_HINT_T1);
    else _mm_prefetch((const char *)at, _MM_HINT_NTA);
}
#endif

#if defined(__x86_64__)
enum { MK_LANES_ADD, MK_LANES_MAX, MK_LANES_ADD_I32 };

/// Lane i of the result is v[i]'s 16 lanes combined by `op` (float add, float max, or
/// int32 add on vectors that hold int32): 15 operations and a transposing shuffle per
/// level instead of 16 separate horizontal reductions. The float sums are added in a
/// fixed order.
__attribute__((target("avx512f"), always_inline)) static inline __m512 mk_lanes16(const __m512 v[16], const int op) {
#define MK_COMBINE(a, b)                                                                                           \
    (op == MK_LANES_MAX       ? _mm512_max_ps(a, b)                                                                \
     : op == MK_LANES_ADD_I32 ? _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(a), _mm512_castps_si512(b))) \
                              : _mm512_add_ps(a, b))
    __m512 a[8], b[4], c[2];
    // 256-bit halves: a[j] holds v[2j] in 128-bit lanes 0-1 and v[2j+1] in lanes 2-3
    for (int j = 0; j < 8; j++)
        a[j] = MK_COMBINE(_mm512_shuffle_f32x4(v[2 * j], v[2 * j + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                          _mm512_shuffle_f32x4(v[2 * j], v[2 * j + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    // 128-bit lanes: b[j] lane L holds channel 4j + L's four partial results
    for (int j = 0; j < 4; j++)
        b[j] = MK_COMBINE(_mm512_shuffle_f32x4(a[2 * j], a[2 * j + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                          _mm512_shuffle_f32x4(a[2 * j], a[2 * j + 1], _MM_SHUFFLE(3, 1, 3, 1)));
    // pairs within lanes: c[j] lane L holds channels 8j + L and 8j + 4 + L, two each
    for (int j = 0; j < 2; j++)
        c[j] = MK_COMBINE(_mm512_shuffle_ps(b[2 * j], b[2 * j + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                          _mm512_shuffle_ps(b[2 * j], b[2 * j + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    // lane L: channels L, 4 + L, 8 + L, 12 + L
    const __m512 all = MK_COMBINE(_mm512_shuffle_ps(c[0], c[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                  _mm512_shuffle_ps(c[0], c[1], _MM_SHUFFLE(3, 1, 3, 1)));
#undef MK_COMBINE
    // position 4L + j holds channel L + 4j
    return _mm512_permutexvar_ps(_mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0), all);
}
#endif

/// What a thread does on each turn of a spin-wait: tell the core it is waiting.
#if defined(__x86_64__)
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

static inline uint32_t mk_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float mk_float(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/// The decoded value of each of the 16 codes in one block, rounded as bitsandbytes does.
static inline void mk_q4_block_lut(const mk_q4_matrix *w, int64_t block, float lut[16]) {
    const float scale = w->absmax[block];
    for (int i = 0; i < 16; i++) {
        float v = w->table[i] * scale;
        if (w->rounding == MK_ROUND_BF16) v = mk_round_bf16(v);
        else if (w->rounding == MK_ROUND_F16) v = mk_round_f16(v);
        lut[i] = v;
    }
}

/// The SIMD paths need whole blocks of 64 elements that never span rows.
static inline int mk_q4_blocks_align(const mk_q4_matrix *w) {
    return w->blocksize % 64 == 0 && w->cols % w->blocksize == 0;
}

#endif
