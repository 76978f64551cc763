#include "AllocationCounter.h"
#include <stddef.h>

#if defined(__GLIBC__)
// glibc's own allocator entry points, which its malloc, calloc and realloc also are.
extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *pointer, size_t size);

// Initial-exec TLS in the executable: reading it never allocates.
static __thread int counting;
static __thread int64_t calls;

void *malloc(size_t size) {
    if (counting) calls++;
    return __libc_malloc(size);
}

void *calloc(size_t count, size_t size) {
    if (counting) calls++;
    return __libc_calloc(count, size);
}

void *realloc(void *pointer, size_t size) {
    if (counting) calls++;
    return __libc_realloc(pointer, size);
}

int allocation_counter_available(void) { return 1; }

void allocation_counter_start(void) {
    calls = 0;
    counting = 1;
}

int64_t allocation_counter_stop(void) {
    counting = 0;
    return calls;
}
#else
int allocation_counter_available(void) { return 0; }
void allocation_counter_start(void) {}
int64_t allocation_counter_stop(void) { return 0; }
#endif
