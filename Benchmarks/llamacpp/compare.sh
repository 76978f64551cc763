#!/usr/bin/env bash
# Interleaved (A B A B ...) speed comparison of llama.cpp and mambad on Falcon-Mamba-7B.
#
# Each round runs
#   A: llama-bench -m GGUF -t THREADS -p PROMPT -n TOKENS -r LLAMA_REPS -o json
#   B: mambad bench --model MODEL --threads THREADS --prompt PROMPT --tokens TOKENS --batch 1
#                   --precision PRECISION --repeat MAMBAD_REPEAT
# and prints the round's prefill (ppPROMPT) and decode (tgTOKENS) tokens/s for both; at the end the
# medians over rounds. Two-core memory bandwidth on the shared host drifts over seconds to minutes,
# hence the interleaving and the medians. Raw outputs are kept in the log folder.
#
# Options (defaults in brackets):
#   --llama-bench PATH   [/work/llama/llama_cpp_python-0.3.36/vendor/llama.cpp/build/bin/llama-bench]
#   --gguf PATH          [/work/llama/falcon-mamba-7b-random-Q4_0.gguf]
#   --mambad PATH        [.build/release/mambad, relative to the repo root]
#   --model DIR          [/work/data/falcon-mamba-7b-random]  (mambad's Hugging Face model folder)
#   --rounds N           [3]
#   --threads N          [2]
#   --prompt N           [512]
#   --tokens N           [64]
#   --precision P        [fast]   (mambad: fast or exact)
#   --lm-head M          [int8]   (mambad: int8, 4bit, or both: each round runs both, in turn)
#   --llama-reps N       [3]      (llama-bench -r: repetitions averaged within a round)
#   --mambad-repeat N    [1]      (mambad bench --repeat: repetitions, median within a round)
#   --packed-cache DIR   [mambad's default]  (mambad bench --packed-cache: where the packed weights live)
#   --log-dir DIR        [a new folder under /tmp]
#   --only llama|mambad  run one side only
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"

LLAMA_BENCH=/work/llama/llama_cpp_python-0.3.36/vendor/llama.cpp/build/bin/llama-bench
GGUF=/work/llama/falcon-mamba-7b-random-Q4_0.gguf
MAMBAD="$REPO/.build/release/mambad"
MODEL=/work/data/falcon-mamba-7b-random
ROUNDS=3 THREADS=2 PROMPT=512 TOKENS=64 PRECISION=fast LM_HEAD=int8 LLAMA_REPS=3 MAMBAD_REPEAT=1
LOG_DIR="" ONLY="" PACKED_CACHE=""

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --llama-bench) LLAMA_BENCH="$2"; shift 2 ;;
        --gguf) GGUF="$2"; shift 2 ;;
        --mambad) MAMBAD="$2"; shift 2 ;;
        --model) MODEL="$2"; shift 2 ;;
        --rounds) ROUNDS="$2"; shift 2 ;;
        --threads) THREADS="$2"; shift 2 ;;
        --prompt) PROMPT="$2"; shift 2 ;;
        --tokens) TOKENS="$2"; shift 2 ;;
        --precision) PRECISION="$2"; shift 2 ;;
        --lm-head) LM_HEAD="$2"; shift 2 ;;
        --llama-reps) LLAMA_REPS="$2"; shift 2 ;;
        --mambad-repeat) MAMBAD_REPEAT="$2"; shift 2 ;;
        --packed-cache) PACKED_CACHE="$2"; shift 2 ;;
        --log-dir) LOG_DIR="$2"; shift 2 ;;
        --only) ONLY="$2"; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "unknown option $1" >&2; usage 2 >&2 ;;
    esac
done

run_llama=1 run_mambad=1
[ "$ONLY" = mambad ] && run_llama=0
[ "$ONLY" = llama ] && run_mambad=0
if [ $run_llama = 1 ]; then
    [ -x "$LLAMA_BENCH" ] || { echo "no llama-bench at $LLAMA_BENCH (see build.sh)" >&2; exit 1; }
    [ -f "$GGUF" ] || { echo "no GGUF at $GGUF (see make_random_gguf.py)" >&2; exit 1; }
fi
if [ $run_mambad = 1 ]; then
    [ -x "$MAMBAD" ] || { echo "no mambad at $MAMBAD (swift build -c release)" >&2; exit 1; }
    [ -d "$MODEL" ] || { echo "no model folder $MODEL" >&2; exit 1; }
fi
[ -n "$LOG_DIR" ] || LOG_DIR="$(mktemp -d /tmp/llamacpp-compare.XXXXXX)"
mkdir -p "$LOG_DIR"
RESULTS="$LOG_DIR/results.tsv"
printf 'round\tengine\tpp%s_tok_s\ttg%s_tok_s\n' "$PROMPT" "$TOKENS" > "$RESULTS"

echo "llama.cpp: $LLAMA_BENCH -m $GGUF"
echo "mambad:    $MAMBAD bench --model $MODEL --precision $PRECISION --lm-head $LM_HEAD"
case "$LM_HEAD" in both) LM_HEADS="int8 4bit" ;; *) LM_HEADS="$LM_HEAD" ;; esac
echo "threads $THREADS, pp$PROMPT, tg$TOKENS, $ROUNDS rounds; logs in $LOG_DIR"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"

# pp and tg tokens/s out of llama-bench's JSON.
parse_llama() {
    python3 - "$1" "$PROMPT" "$TOKENS" <<'PY'
import json, sys
tests = json.load(open(sys.argv[1]))
p, n = int(sys.argv[2]), int(sys.argv[3])
pp = [t["avg_ts"] for t in tests if t["n_prompt"] == p and t["n_gen"] == 0]
tg = [t["avg_ts"] for t in tests if t["n_prompt"] == 0 and t["n_gen"] == n]
print(f"{pp[0]:.2f}\t{tg[0]:.2f}")
PY
}

# pp and tg (batch 1) tokens/s out of mambad bench's table: the header names the columns
# (separated by two or more spaces), the row below it has one whitespace-free value per column.
parse_mambad() {
    python3 - "$1" "$PROMPT" "$PRECISION" <<'PY'
import re, sys
lines = open(sys.argv[1]).read().splitlines()
p, precision = sys.argv[2], sys.argv[3]
h = next(i for i, l in enumerate(lines) if l.startswith("threads") and "tok/s" in l)
cols = re.split(r"\s{2,}", lines[h].strip())
row = next(l.split() for l in lines[h + 1:] if len(l.split()) > 1 and l.split()[1] == precision)
pp = row[cols.index(f"pp{p} tok/s")]
tg = row[cols.index("tg b=1 tok/s")]
print(f"{float(pp):.2f}\t{float(tg):.2f}")
PY
}

for round in $(seq 1 "$ROUNDS"); do
    if [ $run_llama = 1 ]; then
        out="$LOG_DIR/llama-$round.json"
        "$LLAMA_BENCH" -m "$GGUF" -t "$THREADS" -p "$PROMPT" -n "$TOKENS" -r "$LLAMA_REPS" -o json \
            > "$out" 2> "$LOG_DIR/llama-$round.err"
        vals="$(parse_llama "$out")"
        printf '%s\tllama.cpp\t%s\n' "$round" "$vals" >> "$RESULTS"
        printf 'round %s  llama.cpp  pp%s %8s tok/s   tg%s %7s tok/s\n' "$round" "$PROMPT" "${vals%%$'\t'*}" "$TOKENS" "${vals##*$'\t'}"
    fi
    if [ $run_mambad = 1 ]; then
        for head in $LM_HEADS; do
            engine=mambad
            [ "$head" = int8 ] || engine="mambad-$head"
            out="$LOG_DIR/$engine-$round.txt"
            "$MAMBAD" bench --model "$MODEL" --threads "$THREADS" --prompt "$PROMPT" --tokens "$TOKENS" --batch 1 \
                --precision "$PRECISION" --lm-head "$head" --repeat "$MAMBAD_REPEAT" \
                ${PACKED_CACHE:+--packed-cache "$PACKED_CACHE"} > "$out" 2> "$LOG_DIR/$engine-$round.err"
            vals="$(parse_mambad "$out")"
            printf '%s\t%s\t%s\n' "$round" "$engine" "$vals" >> "$RESULTS"
            printf 'round %s  %-10s pp%s %8s tok/s   tg%s %7s tok/s\n' "$round" "$engine" "$PROMPT" "${vals%%$'\t'*}" "$TOKENS" "${vals##*$'\t'}"
        done
    fi
done

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$RESULTS" <<'PY'
import csv, statistics, sys
rows = list(csv.reader(open(sys.argv[1]), delimiter="\t"))
head, rows = rows[0], rows[1:]
print(f"medians over rounds:")
med = {}
for engine in dict.fromkeys(r[1] for r in rows):
    mine = [r for r in rows if r[1] == engine]
    pp = statistics.median(float(r[2]) for r in mine)
    tg = statistics.median(float(r[3]) for r in mine)
    med[engine] = (pp, tg)
    print(f"  {engine:<10} {head[2].replace('_tok_s', '')} {pp:8.2f} tok/s   {head[3].replace('_tok_s', '')} {tg:7.2f} tok/s   ({len(mine)} rounds)")
if "llama.cpp" in med:
    b = med["llama.cpp"]
    for engine, a in med.items():
        if engine != "llama.cpp":
            print(f"  {engine} / llama.cpp: prefill {a[0] / b[0]:.2f}x, decode {a[1] / b[1]:.2f}x")
PY
