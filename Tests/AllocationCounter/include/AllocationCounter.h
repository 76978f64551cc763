#pragma once
#include <stdint.h>

/// Counts malloc, calloc and realloc calls made on the calling thread while counting is
/// on (glibc only: this library defines those three and forwards them to glibc's own;
/// linked into the test binary, it interposes them for every library in the process).
/// Returns 0 where counting is unavailable.
int allocation_counter_available(void);
/// Start counting on this thread from zero.
void allocation_counter_start(void);
/// Stop counting on this thread; the calls counted since the start.
int64_t allocation_counter_stop(void);
