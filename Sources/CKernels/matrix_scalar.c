// Portable matrix kernels: the reference the SIMD paths are tested against,
// and the path on CPUs without AVX2 (aarch64 included).
#include "internal.h"

static float dot_row_f32(const float *w, const float *x, int64_t n) {
    float acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) acc[k] += w[i + k] * x[i + k];
    float s = 0;
    for (; i < n; i++) s += w[i] * x[i];
    for (int k = 0; k < 8; k++) s += acc[k];
    return s;
}

static void dense_rows_to_f32(const mk_dense_matrix *w, int64_t r0, int64_t r1, float *out) {
    const int64_t n = w->cols;
    const size_t esize = w->dtype == MK_DTYPE_F32 ? 4 : 2;
    mk_convert_to_f32((const char *)w->data + (size_t)(r0 * n) * esize, w->dtype, (r1 - r0) * n, out);
}

static void dense_gemv(const mk_dense_matrix *w, const float *x, float *y, int64_t r0, int64_t r1) {
    const int64_t n = w->cols;
    if (w->dtype == MK_DTYPE_F32) {
        const float *data = w->data;
        for (int64_t r = r0; r < r1; r++) y[r] = dot_row_f32(data + r * n, x, n);
        return;
    }
    float row[256];
    for (int64_t r = r0; r < r1; r++) {
        float s = 0;
        for (int64_t c = 0; c < n; c += 256) {
            const int64_t len = n - c < 256 ? n - c : 256;
            const size_t offset = (size_t)(r * n + c) * 2;
            mk_convert_to_f32((const char *)w->data + offset, w->dtype, len, row);
            s += dot_row_f32(row, x + c, len);
        }
        y[r] = s;
    }
}

/// Visit the elements of rows [r0, r1) block by block: fn(lut, first_element, count).
/// Handles blocks that span rows and blocks that start on an odd element.
#define Q4_FOR_EACH_SPAN(w, r0, r1, BODY)                                            \
    do {                                                                             \
        const int64_t end_ = (r1) * (w)->cols;                                       \
        int64_t e_ = (r0) * (w)->cols;                                               \
        float lut[16];                                                               \
        while (e_ < end_) {                                                          \
            const int64_t block_ = e_ / (w)->blocksize;                              \
            int64_t stop_ = (block_ + 1) * (w)->blocksize;                           \
            if (stop_ > end_) stop_ = end_;                                          \
            mk_q4_block_lut((w), block_, lut);                                       \
            for (int64_t e = e_; e < stop_; e++) {                                   \
                const uint8_t byte_ = (w)->codes[e >> 1];                            \
                const float value = lut[(e & 1) ? (byte_ & 0x0F) : (byte_ >> 4)];    \
                BODY;                                                                \
            }                                                                        \
            e_ = stop_;                                                              \
        }                                                                            \
    } while (0)

static void q4_rows_to_f32(const mk_q4_matrix *w, int64_t r0, int64_t r1, float *out) {
    const int64_t base = r0 * w->cols;
    Q4_FOR_EACH_SPAN(w, r0, r1, out[e - base] = value);
}

static void q4_gemv(const mk_q4_matrix *w, const float *x, float *y, int64_t r0, int64_t r1) {
    const int64_t n = w->cols;
    for (int64_t r = r0; r < r1; r++) {
        float s = 0;
        const int64_t base = r * n;
        Q4_FOR_EACH_SPAN(w, r, r + 1, s += value * x[e - base]);
        y[r] = s;
    }
}

static void dense_gemv_batch(const mk_dense_matrix *w, const float *x, int64_t ldx, int64_t batch,
                             float *y, int64_t ldy, int64_t r0, int64_t r1) {
    for (int64_t b = 0; b < batch; b++) dense_gemv(w, x + b * ldx, y + b * ldy, r0, r1);
}

static void q4_gemv_batch(const mk_q4_matrix *w, const float *x, int64_t ldx, int64_t batch,
                          float *y, int64_t ldy, int64_t r0, int64_t r1) {
    for (int64_t b = 0; b < batch; b++) q4_gemv(w, x + b * ldx, y + b * ldy, r0, r1);
}

const mk_matrix_kernels mk_scalar_kernels = {
    .name = "scalar",
    .level = MK_ISA_SCALAR,
    .dense_gemv = dense_gemv,
    .q4_gemv = q4_gemv,
    .dense_gemv_batch = dense_gemv_batch,
    .q4_gemv_batch = q4_gemv_batch,
    .dense_rows_to_f32 = dense_rows_to_f32,
    .q4_rows_to_f32 = q4_rows_to_f32,
};
