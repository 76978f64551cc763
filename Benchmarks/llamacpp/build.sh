#!/usr/bin/env bash
# Build llama.cpp's llama-bench and llama-quantize (CPU only, Release, native ISA, OpenMP)
# from the llama.cpp tree vendored in the PyPI source package llama-cpp-python==0.3.36
# (llama.cpp commit 0c1e57098, ggml 0.25.3), outside this repository.
#
#   Benchmarks/llamacpp/build.sh [DIR]     # DIR defaults to /work/llama
#
# Produces DIR/llama_cpp_python-0.3.36/vendor/llama.cpp/build/bin/{llama-bench,llama-quantize}.
# Needs a C/C++ compiler, Python with pip (cmake and ninja are installed from PyPI when missing).
# Takes ~11 minutes on 2 idle cores.
set -euo pipefail

DIR="${1:-/work/llama}"
VERSION=0.3.36
JOBS="${JOBS:-$(nproc)}"
EXTRA_TARGETS="${EXTRA_TARGETS:-}"   # e.g. EXTRA_TARGETS=llama-perplexity (a NaN check; links in seconds)
mkdir -p "$DIR"
cd "$DIR"

command -v cmake >/dev/null || python3 -m pip install cmake
command -v ninja >/dev/null || python3 -m pip install ninja

if [ ! -f "llama_cpp_python-$VERSION.tar.gz" ]; then
    # --no-binary only for the package itself: "--no-binary :all:" would also build its
    # build dependencies (cmake!) from source while preparing metadata.
    python3 -m pip download --no-deps --no-binary llama-cpp-python "llama-cpp-python==$VERSION" -d "$DIR"
fi
[ -d "llama_cpp_python-$VERSION" ] || tar xzf "llama_cpp_python-$VERSION.tar.gz"

SRC="$DIR/llama_cpp_python-$VERSION/vendor/llama.cpp"
cd "$SRC"
start=$(date +%s)
nice -n 10 cmake -B build -G Ninja \
    -DCMAKE_BUILD_TYPE=Release \
    -DGGML_NATIVE=ON -DGGML_OPENMP=ON \
    -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_BUILD_TOOLS=ON
nice -n 10 cmake --build build --config Release -j "$JOBS" --target llama-bench llama-quantize $EXTRA_TARGETS
end=$(date +%s)
echo "built in $((end - start)) s:"
ls -l "$SRC/build/bin/llama-bench" "$SRC/build/bin/llama-quantize"
