#!/usr/bin/env bash
# bench/cpu/run.sh - the CPU forward-pass benchmark of bench/RESULTS.md, end to end:
#
#   1. builds `qnext` and `bench_cpu` (Release) in the build folder;
#   2. writes the benchmark model (bench/model/config.json: hidden 1024, 16 layers, 64 experts
#      top-8, vocab 151936, bf16) with random weights: `qnext demo-model --config ...` (about
#      2.5 GB, kept and reused while its config.json matches);
#   3. runs bench_cpu: prefill of a 128-token prompt and 64 decode steps at batch 1, per thread
#      count, next to a streaming-read bandwidth measured in the same run (decode as a % of the
#      bandwidth bound), and peak RSS;
#   4. optionally runs llama.cpp's llama-bench (pp128 / tg64) on the same weights converted to
#      GGUF bf16, at the same thread counts, right after;
#   5. prints a markdown block for bench/RESULTS.md: date, commit, machine, load average, both
#      tables and the qnext / llama.cpp ratios.
#
# usage: bench/cpu/run.sh [--build DIR] [--model DIR] [--threads 1,2] [--reps N]
#                         [--llama-src DIR | --llama-bench BIN --gguf FILE] [--no-build]
#   --llama-src DIR   a llama.cpp source tree (e.g. vendor/llama.cpp of the llama-cpp-python
#                     sdist): builds its llama-bench (CPU, native) in DIR/build-qnext-bench if
#                     missing and converts the model with DIR/convert_hf_to_gguf.py (needs a
#                     python with torch, transformers, numpy, safetensors: scripts/requirements-dev.txt;
#                     set PYTHON, default python3), unless --gguf names an existing file
#   --llama-bench BIN, --gguf FILE   use an existing llama-bench and GGUF instead
# Without llama.cpp, the block quotes the reference numbers of the issue, labelled as such.
# The machine should be otherwise idle: the block records the load average before and after.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$(cd "$here/../.." && pwd)"
build="$src/build-bench"
model=""
threads="1,2"
reps=3
llama_src=""
llama_bench=""
gguf=""
do_build=1
while [ $# -gt 0 ]; do
    case "$1" in
    --build) build="$2"; shift 2 ;;
    --model) model="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --reps) reps="$2"; shift 2 ;;
    --llama-src) llama_src="$2"; shift 2 ;;
    --llama-bench) llama_bench="$2"; shift 2 ;;
    --gguf) gguf="$2"; shift 2 ;;
    --no-build) do_build=0; shift ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
[ -n "$model" ] || model="$build/bench-model"
log() { echo "run.sh: $*" >&2; }

# ---- build ---------------------------------------------------------------------------------------
if [ "$do_build" = 1 ]; then
    log "building qnext and bench_cpu (Release) in $build"
    # QN_WERROR=OFF: gcc -O3 raises a false -Wformat-overflow in model/safetensors.c
    cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DQN_WERROR=OFF -DQN_BUILD_TESTS=OFF -DQN_SERVICE=OFF -DQN_GATEWAY=OFF \
        -DQN_CUDA=OFF >/dev/null
    cmake --build "$build" -j"$(nproc)" --target qnext bench_cpu >/dev/null
fi
qnext="$build/bin/qnext"
bench="$build/bin/bench_cpu"
[ -x "$qnext" ] && [ -x "$bench" ] || { echo "run.sh: $qnext or $bench missing (drop --no-build)" >&2; exit 1; }

# ---- model ---------------------------------------------------------------------------------------
if ! cmp -s "$src/bench/model/config.json" "$model/config.json" || [ ! -f "$model/model.safetensors" ]; then
    log "writing the benchmark model to $model"
    "$qnext" demo-model --config "$src/bench/model/config.json" --out "$model" --shard-mb 0 >&2
fi

# ---- llama.cpp (optional) ------------------------------------------------------------------------
if [ -n "$llama_src" ]; then
    if [ -z "$llama_bench" ]; then
        llama_bench="$llama_src/build-qnext-bench/bin/llama-bench"
        if [ ! -x "$llama_bench" ]; then
            log "building llama-bench in $llama_src/build-qnext-bench (takes a while)"
            cmake -S "$llama_src" -B "$llama_src/build-qnext-bench" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
                -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF >/dev/null
            cmake --build "$llama_src/build-qnext-bench" -j"$(nproc)" --target llama-bench >/dev/null
        fi
    fi
    [ -n "$gguf" ] || gguf="$model/bench-bf16.gguf"
    if [ ! -f "$gguf" ]; then
        log "converting the model to GGUF bf16 ($gguf)"
        "${PYTHON:-python3}" "$llama_src/convert_hf_to_gguf.py" "$model" --outtype bf16 --no-mtp --outfile "$gguf" >&2
    fi
fi
if [ -n "$llama_bench" ] && { [ -z "$gguf" ] || [ ! -f "$gguf" ]; }; then
    echo "run.sh: --llama-bench needs --gguf FILE (an existing GGUF of $model)" >&2
    exit 1
fi

# ---- run -----------------------------------------------------------------------------------------
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
log "bench_cpu --threads $threads --reps $reps"
"$bench" --model "$model" --threads "$threads" --reps "$reps" --markdown --tsv "$tmp/qnext.tsv" >"$tmp/qnext.md" \
    2>"$tmp/qnext.err" || { cat "$tmp/qnext.err" >&2; exit 1; }
if [ -n "$llama_bench" ]; then
    log "llama-bench -p 128 -n 64 -t $threads -r $reps"
    "$llama_bench" -m "$gguf" -p 128 -n 64 -t "$threads" -r "$reps" -o csv >"$tmp/llama.csv" 2>"$tmp/llama.err" \
        || { cat "$tmp/llama.err" >&2; exit 1; }
fi
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---- report --------------------------------------------------------------------------------------
commit="$(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [ -n "$(git -C "$src" status --porcelain --untracked-files=no 2>/dev/null)" ]; then commit="$commit + uncommitted changes"; fi
cpu="$(lscpu | sed -n 's/^Model name: *//p' | head -1)"
echo "### CPU forward pass: qnext vs llama.cpp (bench/cpu/run.sh)"
echo
echo "- Date $(date -u +%Y-%m-%d), commit \`$commit\`; machine: \`lscpu\` model \"$cpu\", $(nproc) CPUs;"
echo "  load average (1/5/15 min) $load_before before, $load_after after."
echo "- Model: bench/model/config.json with random bf16 weights (\`qnext demo-model --config\`), prompt 128"
echo "  tokens, 64 greedy decode steps, batch 1, best of $reps (medians in brackets)."
echo
sed -n '1,3p' "$tmp/qnext.md"
echo
sed -n '/^| threads/,$p' "$tmp/qnext.md"
echo
if [ -n "$llama_bench" ]; then
    echo "llama.cpp \`llama-bench -p 128 -n 64 -r $reps\` on the same weights (GGUF bf16), run right after:"
    echo
    echo "| threads | llama.cpp pp128 tok/s | llama.cpp tg64 tok/s | qnext / llama.cpp prefill | qnext / llama.cpp decode |"
    echo "|---|---|---|---|---|"
    awk -F, -v q="$tmp/qnext.tsv" '
        BEGIN { while ((getline line < q) > 0) { split(line, f, "\t"); pp[f[1]] = f[2]; tg[f[1]] = f[3] } }
        NR == 1 { for (i = 1; i <= NF; i++) { gsub(/"/, "", $i); col[$i] = i }; next }
        { gsub(/"/, ""); t = $col["n_threads"]; ts = $col["avg_ts"]; sd = $col["stddev_ts"]
          if ($col["n_prompt"] > 0) lp[t] = sprintf("%.1f ± %.1f", ts, sd) SUBSEP ts
          else lg[t] = sprintf("%.2f ± %.2f", ts, sd) SUBSEP ts; ts_list[t] = 1 }
        END { for (t in ts_list) { split(lp[t], a, SUBSEP); split(lg[t], b, SUBSEP)
              printf "| %s | %s | %s | %.2fx | %.2fx |\n", t, a[1], b[1], pp[t] / a[2], tg[t] / b[2] } }
    ' "$tmp/llama.csv" | sort -t'|' -k2 -n
else
    echo "llama.cpp was not run here; the issue's reference for this machine kind (llama.cpp CPU, bf16, not"
    echo "measured in this run): 152.6 tok/s prefill, 16.7 tok/s decode."
    awk -F'\t' '{ printf "- %s thread(s): qnext prefill %.2fx the reference, decode %.2fx\n", $1, $2 / 152.6, $3 / 16.7 }' \
        "$tmp/qnext.tsv"
fi
