#!/usr/bin/env bash
# Encode throughput of `mambad bench-tokenizer` against Python `tokenizers`, single-threaded, on the
# same text, and a check that both give the same ids.
#
# Usage: Benchmarks/tokenizer/compare.sh [--lines] [RUNS]
#   default: each side encodes the whole ~4 MB text as one string (median of RUNS, default 5);
#   --lines: each side encodes it line by line (Python: encode_batch, TOKENIZERS_PARALLELISM=false).
set -euo pipefail
cd "$(dirname "$0")/../.."
LINES=0
if [ "${1:-}" = "--lines" ]; then LINES=1; shift; fi
RUNS="${1:-5}"
TOKENIZER=Sources/Tokenizer/Resources/falcon-tokenizer.json
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

swift build -c release --scratch-path .build-tok --product mambad
MAMBAD="$(swift build -c release --scratch-path .build-tok --show-bin-path)/mambad"

python3 -c 'import tokenizers' 2>/dev/null || python3 -m pip install --quiet tokenizers

# About 4 MB of mixed prose and code: the repo's Swift sources, Markdown and the test vectors' texts,
# repeated. Written with newline="" so that \r survives.
python3 - "$WORK/corpus.txt" <<'PY'
import glob, json, sys
parts = [open(f, encoding="utf-8", newline="").read()
         for pattern in ("Sources/**/*.swift", "Tests/**/*.swift", "**/*.md")
         for f in sorted(glob.glob(pattern, recursive=True)) if ".build" not in f]
parts += [json.loads(line)["text"] for line in open("Tests/Fixtures/tokenizer/vectors.jsonl", encoding="utf-8")]
unit = "\n".join(parts)
text = unit * (4_000_000 // len(unit.encode("utf-8")) + 1)
open(sys.argv[1], "w", encoding="utf-8", newline="").write(text)
PY

echo "== mambad bench-tokenizer (Swift, release)"
"$MAMBAD" bench-tokenizer --tokenizer "$TOKENIZER" --repeat "$RUNS" $([ "$LINES" = 1 ] && echo --lines) --dump-ids "$WORK/swift-ids.txt" "$WORK/corpus.txt"

echo "== Python tokenizers, TOKENIZERS_PARALLELISM=false"
TOKENIZERS_PARALLELISM=false python3 - "$TOKENIZER" "$WORK/corpus.txt" "$RUNS" "$WORK/python-ids.txt" "$LINES" <<'PY'
import statistics, sys, time
import tokenizers
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[1])
text = open(sys.argv[2], encoding="utf-8", newline="").read()
size = len(text.encode("utf-8"))
by_lines = sys.argv[5] == "1"
lines = [line + "\n" for line in text.split("\n")]
lines[-1] = lines[-1][:-1]
if lines[-1] == "":
    lines.pop()
times = []
for _ in range(int(sys.argv[3])):
    start = time.perf_counter()
    if by_lines:
        ids = [i for e in tok.encode_batch(lines, add_special_tokens=False) for i in e.ids]
    else:
        ids = tok.encode(text, add_special_tokens=False).ids
    times.append(time.perf_counter() - start)
median = statistics.median(times)
print(f"tokenizers {tokenizers.__version__}: {size} bytes{', line by line' if by_lines else ''}, {len(ids)} tokens")
print(f"median of {len(times)}: {median:.3f} s, {size / median / 1e6:.2f} MB/s, {len(ids) / median:.0f} tokens/s")
open(sys.argv[4], "w").write(" ".join(map(str, ids)) + "\n")
PY

if cmp -s "$WORK/swift-ids.txt" "$WORK/python-ids.txt"; then
    echo "ids: identical"
else
    echo "ids: DIFFERENT" >&2
    exit 1
fi
