// The two steps of a decode product's preparation that run on one thread: the RMS norm
// of the residual (mk_rms_norm) and the int8 quantization of the activations
// (mk_q8_quantize_rows), on ROWS x COLS floats that stay in cache; best of 5 runs of
// 20000 each.
//
//   cc -O3 -std=gnu11 -ISources/CKernels/include Benchmarks/kernels/quantize_norm.c \
//      Sources/CKernels/*.c -o /tmp/quantize_norm -lm -lpthread
//   /tmp/quantize_norm 4 8192     # a 4-sequence step's x_proj and out_proj inputs
//   /tmp/quantize_norm 4 4096     # its in_proj input (and the norm before it)
#include "CKernels.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc != 3 || atoi(argv[1]) < 1 || atoi(argv[2]) < 64 || atoi(argv[2]) % 64) {
        fprintf(stderr, "usage: %s ROWS COLS (COLS a multiple of 64)\n", argv[0]);
        return 2;
    }
    const int rows = atoi(argv[1]), cols = atoi(argv[2]), reps = 20000;
    float *x = malloc(sizeof(float) * rows * cols), *out = malloc(sizeof(float) * rows * cols);
    float *weight = malloc(sizeof(float) * cols);
    for (int i = 0; i < rows * cols; i++) x[i] = (float)((i * 7919) % 2001 - 1000) / 300.0f;
    for (int i = 0; i < cols; i++) weight[i] = 1.0f + i % 3;
    void *memory = aligned_alloc(64, (mk_q8_rows_bytes(rows, cols) + 4095) / 4096 * 4096);
    mk_q8_rows q = mk_q8_rows_in(memory, rows, cols);
    double quantize = 1e9, norm = 1e9;
    for (int round = 0; round < 5; round++) {
        double start = now();
        for (int i = 0; i < reps; i++) mk_q8_quantize_rows(x, cols, &q);
        double s = (now() - start) / reps;
        if (s < quantize) quantize = s;
        start = now();
        for (int i = 0; i < reps; i++) mk_rms_norm(x, cols, weight, 1e-5f, rows, cols, out, cols);
        s = (now() - start) / reps;
        if (s < norm) norm = s;
    }
    long checksum = 0;
    for (int i = 0; i < rows * cols; i++) checksum += q.q[i] + (long)out[i];
    printf("%dx%d (%s): quantize %.2f us, rms_norm %.2f us (checksum %ld)\n", rows, cols, mk_isa(), quantize * 1e6,
           norm * 1e6, checksum);
    return 0;
}
