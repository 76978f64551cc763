// How close the packed 4-bit decode product (mk_packed_gemm, TOKENS activation rows, 1
// unless told: a decode batch) comes to a plain read of the same bytes, on the same threads, measured in pairs: each
// repetition runs the product over the whole matrix, then the read, so both see the
// same state of the host's memory bandwidth (which drifts over seconds on shared hosts).
//
//   packed_stream ROWS COLS REPS THREADS [TOKENS]
//
// Prints GB/s of codes read by the product and by the read, and their ratio. The product
// prefetches as MAMBAD_PREFETCH says (0, BYTES or l2:BYTES, nta:BYTES; default l2:6144).
// The codes sit on 4 KiB pages, or on transparent huge pages with PACKED_STREAM_PAGES=huge;
// PACKED_STREAM_PAGES=both keeps a copy on each and alternates them within every
// repetition (one line each), so both see the same bandwidth state.
#include "CKernels.h"
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

__attribute__((target("avx512f"))) static void read_bytes(const uint8_t *p, size_t n) {
    __m512i a = _mm512_setzero_si512(), b = a;
    for (size_t i = 0; i < n; i += 128) {
        a = _mm512_xor_si512(a, _mm512_load_si512(p + i));
        b = _mm512_xor_si512(b, _mm512_load_si512(p + i + 64));
    }
    volatile long sink = _mm512_reduce_add_epi64(_mm512_xor_si512(a, b));
    (void)sink;
}

static mk_packed_matrix matrices[2];  // the same codes on 4 KiB pages, then on huge pages
static int first_variant, last_variant;
static mk_q8_rows activations;
static float *y;
static int threads, reps;
static int64_t code_bytes;
static pthread_barrier_t barrier;
static double product_seconds[2], read_seconds[2];

static void *work(void *arg) {
    const long t = (long)arg;
    const int64_t panels = mk_packed_panels(matrices[first_variant].rows);
    const int64_t p0 = panels * t / threads, p1 = panels * (t + 1) / threads;
    const int64_t b0 = code_bytes * t / threads / 128 * 128, b1 = code_bytes * (t + 1) / threads / 128 * 128;
    for (int r = 0; r < reps; r++)
        for (int v = first_variant; v <= last_variant; v++) {
            const mk_packed_matrix *matrix = &matrices[v];
            pthread_barrier_wait(&barrier);
            double start = now();
            mk_packed_gemm(matrix, &activations, y, matrix->rows, p0, p1, NULL);
            pthread_barrier_wait(&barrier);
            if (t == 0) product_seconds[v] += now() - start;
            start = now();
            read_bytes(matrix->codes + b0, (size_t)(b1 - b0));
            pthread_barrier_wait(&barrier);
            if (t == 0) read_seconds[v] += now() - start;
        }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: %s ROWS COLS REPS THREADS [TOKENS]\n", argv[0]);
        return 2;
    }
    const int64_t rows = atoll(argv[1]), cols = atoll(argv[2]);
    reps = atoi(argv[3]);
    threads = atoi(argv[4]);
    const int tokens = argc == 6 ? atoi(argv[5]) : 1;
    if (rows < 16 || cols < 64 || cols % 128 || reps < 1 || threads < 1 || threads > 64 || tokens < 1 || tokens > 8) {
        fprintf(stderr, "need ROWS >= 16, COLS a multiple of 128, REPS >= 1, 1 <= THREADS <= 64, 1 <= TOKENS <= 8\n");
        return 2;
    }
    code_bytes = mk_packed_code_bytes(rows, cols, 4);
    const int64_t scales = mk_packed_scale_count(rows, cols), row_count = mk_packed_row_count(rows);
    // 4 KiB pages as most of a page-cache mapping in small folios has; huge pages as a
    // mapping of 2 MiB folios or a private copy of the weights has.
    const size_t huge = 2 << 20, length = (size_t)(code_bytes + huge - 1) / huge * huge;
    const char *pages = getenv("PACKED_STREAM_PAGES");
    const int both = pages && strcmp(pages, "both") == 0;
    first_variant = pages && strcmp(pages, "huge") == 0 ? 1 : 0;
    last_variant = both ? 1 : first_variant;
    uint8_t *block_scales = aligned_alloc(64, (size_t)(scales + 4095) / 4096 * 4096);
    float *row_scales = aligned_alloc(64, (size_t)(row_count * 4 + 4095) / 4096 * 4096);
    memset(block_scales, 200, (size_t)scales);
    for (int64_t i = 0; i < row_count; i++) row_scales[i] = 0.01f;
    for (int v = first_variant; v <= last_variant; v++) {
        uint8_t *codes = aligned_alloc(huge, length);
        madvise(codes, length, v == 1 ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
        srand(1);
        for (int64_t i = 0; i < code_bytes; i++) codes[i] = (uint8_t)rand();
        matrices[v] = (mk_packed_matrix){.codes = codes, .scales = block_scales, .row_scales = row_scales,
                                         .out_scale = 1, .rows = rows, .cols = cols, .bits = 4};
        for (int i = 0; i < 16; i++) matrices[v].lut[i] = (uint8_t)(120 + i);
    }
    float *x = malloc(sizeof(float) * (size_t)(cols * tokens));
    for (int64_t i = 0; i < cols * tokens; i++) x[i] = (float)(rand() % 200) / 100.0f - 1;
    void *memory = aligned_alloc(64, (size_t)(mk_q8_rows_bytes(tokens, cols) + 4095) / 4096 * 4096);
    activations = mk_q8_rows_in(memory, tokens, cols);
    mk_q8_quantize_rows(x, cols, &activations);
    y = malloc(sizeof(float) * (size_t)(rows * tokens));

    pthread_barrier_init(&barrier, NULL, (unsigned)threads);
    pthread_t workers[64];
    for (long t = 1; t < threads; t++) pthread_create(&workers[t], NULL, work, (void *)t);
    work(0);
    for (int t = 1; t < threads; t++) pthread_join(workers[t], NULL);
    for (int v = first_variant; v <= last_variant; v++) {
        const double product = (double)code_bytes * reps / product_seconds[v] / 1e9;
        const double read = (double)code_bytes * reps / read_seconds[v] / 1e9;
        printf("%lldx%lld, %d tokens, %d threads, prefetch %s%lld, %s pages, %s: product %.1f GB/s, read %.1f GB/s, ratio %.2f\n",
               (long long)rows, (long long)cols, tokens, threads,
               mk_prefetch_distance() == 0 ? "" : mk_prefetch_level() == MK_PREFETCH_L2 ? "l2:" : "nta:",
               (long long)mk_prefetch_distance(), v == 1 ? "huge" : "4 KiB", mk_q8_path(), product, read, product / read);
    }
    return 0;
}
