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
