#!/usr/bin/env bash
# Builds packed_stream.c against the CKernels sources (outside the Swift build, -O3,
# dispatch as in mambad) and runs it ROUNDS times on a 128 MiB matrix (16 x the L3),
# 2 threads unless told: the decode product's share of the plain read bandwidth.
#   Benchmarks/kernels/run.sh [ROUNDS] [THREADS] [TOKENS]
# MAMBAD_PREFETCH=0|BYTES|l2:BYTES|nta:BYTES picks the product's prefetch (default l2:6144).
# PACKED_STREAM_PAGES=huge puts the codes on 2 MiB pages (default 4 KiB); =both keeps a copy
# on each and alternates them in every repetition.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SRC="$HERE/../../Sources/CKernels"
BIN="$(mktemp -d)/packed_stream"
# clang, as SwiftPM builds the package's C (gcc's build of the 4-token product ran 10-15%
# slower here, session 9); CC=... picks another compiler.
COMPILER="${CC:-$(command -v clang || echo cc)}"
"$COMPILER" -O3 -std=gnu11 -I"$SRC/include" "$HERE/packed_stream.c" "$SRC"/*.c -o "$BIN" -lm -lpthread
for _ in $(seq 1 "${1:-5}"); do "$BIN" 65536 4096 8 "${2:-2}" "${3:-1}"; done
