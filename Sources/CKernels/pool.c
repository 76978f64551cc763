// A persistent pool of compute threads. The caller of mk_pool_run works too, so a
// pool of n threads has n - 1 workers. Tasks are claimed from an atomic counter; idle
// workers spin briefly (a decode step issues hundreds of short parallel sections),
// then sleep on a condition variable.
#include "internal.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>


enum { SPIN_ROUNDS = 4000 };

struct mk_pool {
    int threads;
    pthread_t *workers;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    // The current job; `generation` changes once per mk_pool_run.
    _Atomic uint64_t generation;
    mk_task_fn fn;
    void *context;
    int64_t tasks;
    int pinned;  // task i runs on thread i (the caller is thread 0)
    _Atomic int64_t next_task;
    _Atomic int64_t done_tasks;
    // The last generation each worker finished: the caller waits for all of them, so
    // no worker can still be inside a job when the next one is set up.
    _Atomic uint64_t *finished;
    _Atomic int stop;
};

typedef struct { mk_pool *pool; int index; } worker_arg;

static void run_tasks(mk_pool *pool, int thread) {
    if (pool->pinned) {
        pool->fn(pool->context, thread);
        atomic_fetch_add_explicit(&pool->done_tasks, 1, memory_order_release);
        return;
    }
    for (;;) {
        const int64_t task = atomic_fetch_add_explicit(&pool->next_task, 1, memory_order_relaxed);
        if (task >= pool->tasks) break;
        pool->fn(pool->context, task);
        atomic_fetch_add_explicit(&pool->done_tasks, 1, memory_order_release);
    }
}

static void *worker_main(void *raw) {
    worker_arg arg = *(worker_arg *)raw;
    free(raw);
    mk_pool *pool = arg.pool;
    uint64_t seen = 0;
    for (;;) {
        uint64_t generation = atomic_load_explicit(&pool->generation, memory_order_acquire);
        for (int spin = 0; generation == seen && spin < SPIN_ROUNDS; spin++) {
            cpu_relax();
            generation = atomic_load_explicit(&pool->generation, memory_order_acquire);
        }
        if (generation == seen) {
            pthread_mutex_lock(&pool->lock);
            while ((generation = atomic_load_explicit(&pool->generation, memory_order_acquire)) == seen &&
                   !atomic_load(&pool->stop))
                pthread_cond_wait(&pool->wake, &pool->lock);
            pthread_mutex_unlock(&pool->lock);
        }
        if (atomic_load(&pool->stop)) return NULL;
        seen = generation;
        run_tasks(pool, arg.index + 1);
        atomic_store_explicit(&pool->finished[arg.index], generation, memory_order_release);
    }
}

mk_pool *mk_pool_create(int threads) {
    if (threads < 1) threads = 1;
    mk_pool *pool = calloc(1, sizeof(mk_pool));
    if (!pool) return NULL;
    pool->threads = threads;
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->wake, NULL);
    pool->workers = calloc((size_t)threads, sizeof(pthread_t));
    pool->finished = calloc((size_t)threads, sizeof(*pool->finished));
    for (int i = 0; i < threads - 1; i++) {
        worker_arg *arg = malloc(sizeof(worker_arg));
        *arg = (worker_arg){pool, i};
        if (!arg || pthread_create(&pool->workers[i], NULL, worker_main, arg) != 0) {
            free(arg);
            pool->threads = i + 1;
            break;
        }
    }
    return pool;
}

int mk_pool_threads(const mk_pool *pool) { return pool ? pool->threads : 1; }

static void start(mk_pool *pool, mk_task_fn fn, void *context, int64_t tasks, int pinned) {
    pool->pinned = pinned;
    pool->fn = fn;
    pool->context = context;
    pool->tasks = tasks;
    atomic_store_explicit(&pool->done_tasks, 0, memory_order_relaxed);
    atomic_store_explicit(&pool->next_task, 0, memory_order_relaxed);
    pthread_mutex_lock(&pool->lock);
    const uint64_t generation = atomic_fetch_add_explicit(&pool->generation, 1, memory_order_release) + 1;
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->lock);
    run_tasks(pool, 0);
    while (atomic_load_explicit(&pool->done_tasks, memory_order_acquire) < tasks) cpu_relax();
    for (int i = 0; i < pool->threads - 1; i++)
        while (atomic_load_explicit(&pool->finished[i], memory_order_acquire) != generation) cpu_relax();
}

void mk_pool_run(mk_pool *pool, mk_task_fn fn, void *context, int64_t tasks) {
    if (tasks <= 0) return;
    if (!pool || pool->threads == 1 || tasks == 1) {
        for (int64_t t = 0; t < tasks; t++) fn(context, t);
        return;
    }
    start(pool, fn, context, tasks, 0);
}

void mk_pool_run_each(mk_pool *pool, mk_task_fn fn, void *context) {
    if (!pool || pool->threads == 1) {
        fn(context, 0);
        return;
    }
    start(pool, fn, context, pool->threads, 1);
}

void mk_pool_destroy(mk_pool *pool) {
    if (!pool) return;
    pthread_mutex_lock(&pool->lock);
    atomic_store(&pool->stop, 1);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->lock);
    for (int i = 0; i < pool->threads - 1; i++) pthread_join(pool->workers[i], NULL);
    pthread_cond_destroy(&pool->wake);
    pthread_mutex_destroy(&pool->lock);
    free(pool->workers);
    free((void *)pool->finished);
    free(pool);
}

int mk_thread_set_nice(int nice) {
#if defined(__linux__)
    return setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), nice);
#else
    (void)nice;
    return -1;
#endif
}

void mk_share_init(mk_share *share, int64_t begin, int64_t end) {
    if (end < begin) end = begin;
    __atomic_store_n(&share->ends, (uint64_t)(uint32_t)begin | (uint64_t)(uint32_t)end << 32, __ATOMIC_RELEASE);
}

int64_t mk_share_take(mk_share *share, int helper, int64_t *first) { return mk_share_take_multiple(share, helper, 1, first); }

int64_t mk_share_take_multiple(mk_share *share, int helper, int64_t multiple, int64_t *first) {
    if (multiple < 1) multiple = 1;
    uint64_t old = __atomic_load_n(&share->ends, __ATOMIC_ACQUIRE);
    for (;;) {
        const int64_t front = (uint32_t)old, back = (uint32_t)(old >> 32), left = back - front;
        if (left <= 0) return 0;
        int64_t n = helper ? (left + 7) / 8 : (left + 3) / 4;
        n = (n + multiple - 1) / multiple * multiple;
        if (n > left) n = left;
        const int64_t new_front = helper ? front : front + n, new_back = helper ? back - n : back;
        const uint64_t taken = (uint64_t)(uint32_t)new_front | (uint64_t)(uint32_t)new_back << 32;
        if (__atomic_compare_exchange_n(&share->ends, &old, taken, 1, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            *first = helper ? new_back : front;
            return n;
        }
    }
}
