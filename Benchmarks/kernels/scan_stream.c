// The selective scan as a decode step runs it: one token per sequence, every layer's
// state in turn (64 layers of 4 sequences are 128 MiB of state, far more than the L3),
// the channels split between the threads. Prints the best of 3 rounds' time a step and
// the bytes it moves (each state read and written, the decay rates read). With `conv`,
// the causal conv of the same step instead (state [4, D] a sequence, weights [4, D]).
//
//   cc -O3 -std=gnu11 -ISources/CKernels/include Benchmarks/kernels/scan_stream.c \
//      Sources/CKernels/*.c -o /tmp/scan_stream -lm -lpthread
//   /tmp/scan_stream LAYERS SEQUENCES THREADS REPS [conv]     # e.g. 64 4 2 3 (7B, batch 4)
//
// With LAYERS = 1 the states stay in cache: the scan's arithmetic alone.
#include "CKernels.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
enum { D = 8192, N = 16 };
static int layers, seqs, threads, reps, conv;
static float **h, **cs, *cw, *cb, *A2, *Dskip, *dt, *x, *bc, *z, *y;
static pthread_barrier_t barrier;
static void *work(void *arg) {
    const long t = (long)arg;
    const int64_t d0 = (int64_t)D * t / threads, d1 = (int64_t)D * (t + 1) / threads;
    for (int r = 0; r < reps; r++)
        for (int l = 0; l < layers; l++) {
            for (int s = 0; s < seqs && conv; s++)
                mk_conv1d_silu(cs[l * seqs + s], cw + (size_t)l * 4 * D, cb + (size_t)l * D, x + s * D, D, 1, D, 4, y + s * D, d0, d1);
            for (int s = 0; s < seqs && !conv; s++)
                mk_selective_scan(h[l * seqs + s], A2 + (size_t)l * D * N, Dskip, dt + s * D, x + s * D, bc + s * 32, bc + s * 32 + 16, 32,
                                  z + s * D, D, 1, D, N, y + s * D, d0, d1);
            pthread_barrier_wait(&barrier);
        }
    return NULL;
}
int main(int argc, char **argv) {
    if (argc != 5 && !(argc == 6 && strcmp(argv[5], "conv") == 0)) {
        fprintf(stderr, "usage: %s LAYERS SEQUENCES THREADS REPS [conv]\n", argv[0]);
        return 2;
    }
    layers = atoi(argv[1]); seqs = atoi(argv[2]); threads = atoi(argv[3]); reps = atoi(argv[4]); conv = argc == 6;
    cs = malloc(sizeof(float *) * layers * seqs);
    for (int i = 0; i < layers * seqs; i++) { cs[i] = aligned_alloc(64, sizeof(float) * D * 4); for (int j = 0; j < D * 4; j++) cs[i][j] = 0.01f * (j % 5); }
    cw = aligned_alloc(64, sizeof(float) * D * 4 * layers); cb = aligned_alloc(64, sizeof(float) * D * layers);
    for (size_t j = 0; j < (size_t)D * 4 * layers; j++) cw[j] = 0.1f * (j % 3);
    for (size_t j = 0; j < (size_t)D * layers; j++) cb[j] = 0.01f;
    h = malloc(sizeof(float *) * layers * seqs);
    for (int i = 0; i < layers * seqs; i++) { h[i] = aligned_alloc(64, sizeof(float) * D * N); for (int j = 0; j < D * N; j++) h[i][j] = 0.01f * (j % 7); }
    A2 = aligned_alloc(64, sizeof(float) * D * N * layers); for (size_t j = 0; j < (size_t)D * N * layers; j++) A2[j] = -0.1f - 0.01f * (j % 13);
    Dskip = malloc(sizeof(float) * D); dt = malloc(sizeof(float) * D * seqs); x = malloc(sizeof(float) * D * seqs);
    z = malloc(sizeof(float) * D * seqs); y = malloc(sizeof(float) * D * seqs); bc = malloc(sizeof(float) * 32 * seqs);
    for (int j = 0; j < D; j++) Dskip[j] = 1;
    for (int j = 0; j < D * seqs; j++) { dt[j] = 0.05f; x[j] = 0.3f; z[j] = 0.2f; }
    for (int j = 0; j < 32 * seqs; j++) bc[j] = 0.1f;
    pthread_barrier_init(&barrier, NULL, threads);
    pthread_t w[64];
    double best = 1e9;
    for (int round = 0; round < 3; round++) {
        double start = now();
        for (long t = 1; t < threads; t++) pthread_create(&w[t], NULL, work, (void *)t);
        work(0);
        for (int t = 1; t < threads; t++) pthread_join(w[t], NULL);
        double s = (now() - start) / reps;
        if (s < best) best = s;
    }
    const double bytes = conv ? (double)layers * seqs * D * 4 * 4 * 2 + (double)layers * D * 5 * 4
                              : (double)layers * seqs * D * N * 4 * 2 + (double)layers * D * N * 4;
    printf("%s: %d layers x %d sequences, %d threads: %.3f ms a step, %.1f GB/s (%s)\n", conv ? "conv" : "scan", layers, seqs, threads,
           best * 1e3, bytes / best / 1e9, conv ? "conv state read+written, weights and bias read" : "state read+written, A2 read");
    return 0;
}
