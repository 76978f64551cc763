// Runtime CPU dispatch: the best matrix kernels this CPU supports, picked once at load.
#include "internal.h"
#include <stdatomic.h>
#include <stdlib.h>

static _Atomic(const mk_matrix_kernels *) active = NULL;

static const mk_matrix_kernels *best_available(int limit) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    const int has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                         __builtin_cpu_supports("f16c");
    const int has_avx512 = has_avx2 && __builtin_cpu_supports("avx512f") &&
                           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
    if (limit >= 3 && has_avx512) return &mk_avx512_kernels;
    if (limit >= 2 && has_avx2) return &mk_avx2_kernels;
#else
    (void)limit;
#endif
    return &mk_scalar_kernels;
}

/// The ceiling MAMBAD_ISA sets (scalar, avx2, avx512), for benchmarking a slower path.
static int isa_limit(void) {
    const char *wanted = getenv("MAMBAD_ISA");
    if (wanted == NULL) return 3;
    if (strcmp(wanted, "scalar") == 0) return 1;
    if (strcmp(wanted, "avx2") == 0) return 2;
    return 3;
}

static inline const mk_matrix_kernels *kernels(void) {
    const mk_matrix_kernels *k = atomic_load_explicit(&active, memory_order_acquire);
    if (k == NULL) {
        k = best_available(isa_limit());
        atomic_store_explicit(&active, k, memory_order_release);
    }
    return k;
}

const char *mk_isa(void) { return kernels()->name; }

int mk_isa_level(void) { return kernels()->level; }

/// The decode products' prefetch plan: distance in bytes, level, and whether it is fixed
/// (1) or the models may tune it (0); fixed is -1 until first asked, then from
/// MAMBAD_PREFETCH (a valid plan, "BYTES", "l2:BYTES" or "nta:BYTES", fixes it), else
/// MK_PREFETCH_BYTES into L2, not fixed.
static _Atomic int64_t prefetch_distance = MK_PREFETCH_BYTES;
static _Atomic int prefetch_level = MK_PREFETCH_L2;
static _Atomic int prefetch_fixed = -1;

int64_t mk_prefetch_clamp(int64_t bytes) { return bytes < 0 ? 0 : bytes > 65536 ? 65536 : bytes / 64 * 64; }

static int known_level(int level) { return level == MK_PREFETCH_NONTEMPORAL ? level : MK_PREFETCH_L2; }

int mk_prefetch_parse(const char *text, int64_t *bytes, int *level) {
    int wanted_level = MK_PREFETCH_L2;
    if (strncmp(text, "l2:", 3) == 0) text += 3;
    else if (strncmp(text, "nta:", 4) == 0) text += 4, wanted_level = MK_PREFETCH_NONTEMPORAL;
    const char *p = text;
    int64_t n = 0;
    for (; *p >= '0' && *p <= '9'; p++)
        if ((n = n * 10 + (*p - '0')) > 65536) return 0;
    if (p == text) return 0;
    if (*p == 'K' || *p == 'k') n *= 1024, p++;
    if (*p != 0 || n > 65536) return 0;
    *bytes = mk_prefetch_clamp(n);
    *level = wanted_level;
    return 1;
}

static void prefetch_setting_from_environment(void) {
    if (atomic_load_explicit(&prefetch_fixed, memory_order_acquire) >= 0) return;
    const char *setting = getenv("MAMBAD_PREFETCH");
    int64_t distance = MK_PREFETCH_BYTES;
    int level = MK_PREFETCH_L2;
    const int fixed = setting && mk_prefetch_parse(setting, &distance, &level);
    atomic_store_explicit(&prefetch_distance, fixed ? distance : MK_PREFETCH_BYTES, memory_order_relaxed);
    atomic_store_explicit(&prefetch_level, fixed ? level : MK_PREFETCH_L2, memory_order_relaxed);
    atomic_store_explicit(&prefetch_fixed, fixed, memory_order_release);
}

int64_t mk_prefetch_distance(void) {
    prefetch_setting_from_environment();
    return atomic_load_explicit(&prefetch_distance, memory_order_relaxed);
}

int mk_prefetch_level(void) {
    prefetch_setting_from_environment();
    return atomic_load_explicit(&prefetch_level, memory_order_relaxed);
}

void mk_set_prefetch(int64_t bytes, int level) {
    prefetch_setting_from_environment();
    atomic_store_explicit(&prefetch_distance, mk_prefetch_clamp(bytes), memory_order_relaxed);
    atomic_store_explicit(&prefetch_level, known_level(level), memory_order_relaxed);
}

int mk_prefetch_fixed(void) {
    prefetch_setting_from_environment();
    return atomic_load_explicit(&prefetch_fixed, memory_order_relaxed);
}

void mk_fix_prefetch(int64_t bytes, int level) {
    prefetch_setting_from_environment();
    if (bytes >= 0) mk_set_prefetch(bytes, level);
    atomic_store_explicit(&prefetch_fixed, bytes >= 0, memory_order_relaxed);
}

int mk_force_isa(int isa) {
    const mk_matrix_kernels *k = best_available(isa == 0 ? 3 : isa);
    const char *wanted = isa == 1 ? "scalar" : isa == 2 ? "avx2" : isa == 3 ? "avx512" : k->name;
    if (strcmp(k->name, wanted) != 0) return -1;
    atomic_store_explicit(&active, k, memory_order_release);
    return 0;
}

void mk_dense_gemv(const mk_dense_matrix *w, const float *x, float *y, int64_t r0, int64_t r1) {
    kernels()->dense_gemv(w, x, y, r0, r1);
}

void mk_q4_gemv(const mk_q4_matrix *w, const float *x, float *y, int64_t r0, int64_t r1) {
    kernels()->q4_gemv(w, x, y, r0, r1);
}

void mk_dense_gemv_batch(const mk_dense_matrix *w, const float *x, int64_t ldx, int64_t batch,
                         float *y, int64_t ldy, int64_t r0, int64_t r1) {
    kernels()->dense_gemv_batch(w, x, ldx, batch, y, ldy, r0, r1);
}

void mk_q4_gemv_batch(const mk_q4_matrix *w, const float *x, int64_t ldx, int64_t batch,
                      float *y, int64_t ldy, int64_t r0, int64_t r1) {
    kernels()->q4_gemv_batch(w, x, ldx, batch, y, ldy, r0, r1);
}

void mk_dense_rows_to_f32(const mk_dense_matrix *w, int64_t r0, int64_t r1, float *out) {
    kernels()->dense_rows_to_f32(w, r0, r1, out);
}

void mk_q4_rows_to_f32(const mk_q4_matrix *w, int64_t r0, int64_t r1, float *out) {
    kernels()->q4_rows_to_f32(w, r0, r1, out);
}
