#!/usr/bin/env bash
# bench/gpu/run.sh - the one-command GPU check: build, op checks, golden fixtures, benchmarks, and
# a report, in under 10 minutes on one H100 or H200 (bench/gpu/README.md says how to run it through
# the device tool and what each stage checks).
#
# Needs on the GPU machine: the CUDA toolkit (nvcc), cmake, a C compiler, and for the baseline a
# Python with torch + transformers; utf8proc and cJSON come from .gpu-deps/ when present
# (bench/gpu/pack_deps.sh, run on the development machine). No gRPC, h2o, Check or internet.
#
# Stages (each time-boxed; a failed or timed-out stage is reported and the next one runs):
#   env       nvidia-smi GPU name, driver, CUDA version, date, commit
#   build     cmake + the engine, the CLI, check_ops, gpu_golden, gpu_bench (CUDA for this GPU)
#   ops       check_ops: every CUDA op against the CPU (split-bf16 GEMM path), then the exact fp32
#             GEMM path on the matmul/MoE ops
#   golden    gpu_golden: the transformers fixtures on the GPU (split path, then fp32 path)
#   engine    gpu_engine: the whole engine (eng_* API, batching, CUDA graphs from the model's step
#             keys) with --device cuda on the fixtures, greedy tokens against the CPU engine
#   engine_tp with 2+ GPUs: qnext-nccl-check (own and bound streams), then gpu_engine --tp 2 (NCCL
#             on the backends' streams) against the CPU engine; one GPU: skipped, saying so
#   bench     gpu_bench: full-dimension random Qwen3-Next in FP8 (as many of the 48 layers as fit)
#   hf        hf_baseline.py: transformers generate/prefill, bf16, 4 layers
#   bench_bf16 gpu_bench in bf16 with the same 4 layers (per-layer comparison with hf)
#   report    $OUT/gpu_results.md (paste into bench/RESULTS.md) and $OUT/gpu_results.json
#
# Environment: OUT (results folder; the device tool sets it), QN_GPU_DEADLINE (seconds for the whole
# run, default 570), QN_GPU_BUILD (build folder, default build-gpu), PYTHON (default python3),
# QN_GPU_STAGES (space-separated subset of stage names to run, default all).
# Exit status: 0 if every stage passed, 1 otherwise (the report is written either way).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
root=$PWD
out=${OUT:-$root/gpu-out}
mkdir -p "$out"
deadline=${QN_GPU_DEADLINE:-570}
build=${QN_GPU_BUILD:-$root/build-gpu}
py=${PYTHON:-python3}
only=" ${QN_GPU_STAGES:-env build ops ops_fp32 golden golden_fp32 engine engine_tp bench hf bench_bf16 report} "
t0=$(date +%s)
stages=$out/stages.tsv
: > "$stages"
failed=0

say() { echo "[run.sh $(( $(date +%s) - t0 ))s] $*"; }

# stage NAME MAX_SECONDS CMD...: runs CMD under a time limit (what is left before the deadline,
# keeping 25 s for the report), output to $out/NAME.log (its tail is echoed), one line in
# stages.tsv: name, status (ok | failed (rc N) | timeout | skipped), seconds, log.
stage() {
    local name=$1 max=$2 left lim s rc d status
    shift 2
    if [[ $only != *" $name "* ]]; then return 0; fi
    left=$(( deadline - ($(date +%s) - t0) - 25 ))
    lim=$(( max < left ? max : left ))
    if (( lim < 10 )); then
        printf '%s\tskipped\t0\t-\n' "$name" >> "$stages"
        say "$name: skipped (out of time)"
        failed=1
        return 0
    fi
    say "$name: start (limit ${lim}s)"
    s=$(date +%s)
    timeout -k 5 "$lim" "$@" > "$out/$name.log" 2>&1
    rc=$?
    d=$(( $(date +%s) - s ))
    case $rc in
    0) status=ok ;;
    124 | 137) status=timeout ;;
    *) status="failed (rc $rc)" ;;
    esac
    [ $rc -eq 0 ] || failed=1
    printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$d" "$out/$name.log" >> "$stages"
    tail -n 60 "$out/$name.log"
    say "$name: $status in ${d}s"
}

# ---- env ----------------------------------------------------------------------------------------
deps=""
if [ -d "$root/.gpu-deps" ]; then
    deps="$root/.gpu-deps"
    export LD_LIBRARY_PATH="$deps/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
env_info() {
    echo "date_utc=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "host=$(hostname)"
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader | head -1 |
            awk -F', ' '{print "gpu=" $1; print "driver=" $2; print "gpu_memory=" $3; print "compute_cap=" $4}'
        echo "cuda_driver_api=$(nvidia-smi | sed -n 's/.*CUDA Version: *\([0-9.]*\).*/\1/p' | head -1)"
    else
        echo "gpu=none (no nvidia-smi)"
    fi
    echo "nvcc=$(nvcc --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\).*/\1/p')"
    echo "cmake=$(cmake --version 2>/dev/null | head -1 | awk '{print $3}')"
    echo "cc=$(cc --version 2>/dev/null | head -1)"
    echo "python=$($py -c 'import sys; print(sys.version.split()[0])' 2>/dev/null || echo none)"
    if git rev-parse HEAD >/dev/null 2>&1; then
        echo "commit=$(git rev-parse HEAD)"
        echo "uncommitted_files=$(git status --porcelain | wc -l)"
    elif [ -f "$root/.gpu-deps/commit.txt" ]; then
        sed -n 's/^commit /commit=/p; s/^uncommitted_files /uncommitted_files=/p; s/^packed /packed=/p' \
            "$root/.gpu-deps/commit.txt"
    else
        echo "commit=unknown"
    fi
    echo "deps_prefix=${deps:-system}"
    echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
    echo "cpus=$(nproc)"
    echo "host_mem_gb=$(awk '/MemTotal/ {printf "%.0f", $2 / 1048576}' /proc/meminfo)"
}
if [[ $only == *" env "* ]]; then
    s=$(date +%s)
    env_info > "$out/env.txt" 2>&1
    printf 'env\tok\t%s\t%s\n' "$(( $(date +%s) - s ))" "$out/env.txt" >> "$stages"
    cat "$out/env.txt"
fi

# CUDA architecture of this GPU (9.0 -> 90a, the Hopper build; else e.g. 8.9 -> 89)
cc_ver=$(sed -n 's/^compute_cap=//p' "$out/env.txt" 2>/dev/null | head -1)
case "$cc_ver" in
9.0) arch=90a ;;
"") arch=90a ;;
*) arch=${cc_ver/./} ;;
esac

# ---- build --------------------------------------------------------------------------------------
# (QN_WERROR=OFF: another compiler's new warnings must not stop the check; CI builds with -Werror)
# shellcheck disable=SC2016 # the script's $1.. are its own positional arguments
stage build 300 bash -c 'set -e
    cmake -S "$1" -B "$2" -DCMAKE_BUILD_TYPE=Release -DQN_CUDA=ON -DQN_SERVICE=OFF -DQN_GATEWAY=OFF \
        -DQN_BUILD_TESTS=OFF -DQN_WERROR=OFF -DQN_CUDA_ARCHS="$3" ${4:+"-DQN_DEPS_PREFIX=$4"}
    cmake --build "$2" -j "$5" --target qnext check_ops gpu_golden gpu_bench gpu_engine' \
    _ "$root" "$build" "$arch" "$deps" "$(nproc)"
bin=$build/bin

# ---- ops ----------------------------------------------------------------------------------------
stage ops 120 "$bin/check_ops" --test cuda --json "$out/ops.json"
stage ops_fp32 45 "$bin/check_ops" --test cuda --gemm fp32 --filter matmul,moe --json "$out/ops_fp32.json"

# ---- golden -------------------------------------------------------------------------------------
export QNEXT_SOURCE_DIR=$root
stage golden 60 "$bin/gpu_golden" --json "$out/golden.json"
stage golden_fp32 45 "$bin/gpu_golden" --gemm fp32 --tol 2e-3 --json "$out/golden_fp32.json"

# ---- engine -------------------------------------------------------------------------------------
stage engine 60 "$bin/gpu_engine" --device cuda --json "$out/engine.json"
n_gpus=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | wc -l)
if [[ $only == *" engine_tp "* ]] && (( n_gpus < 2 )); then
    printf 'engine_tp\tskipped (%s GPU: TP 2 needs 2)\t0\t-\n' "$n_gpus" >> "$stages"
    say "engine_tp: skipped: this machine has $n_gpus GPU(s), tensor parallelism over NCCL needs 2"
else
    # shellcheck disable=SC2016 # the script's $1.. are its own positional arguments
    stage engine_tp 90 bash -c 'set -e
        cmake --build "$1" -j "$2" --target qnext-nccl-check
        "$3/qnext-nccl-check"
        "$3/gpu_engine" --device cuda --tp 2 --json "$4/engine_tp2.json"' _ "$build" "$(nproc)" "$bin" "$out"
fi

# ---- benchmarks ---------------------------------------------------------------------------------
# (the sparse checkpoint goes next to the build, on disk: never a tmpfs, whose page-ins of holes count)
stage bench 180 "$bin/gpu_bench" --dtype fp8 --tmp "$build" --json "$out/bench_fp8.json"
stage hf 100 "$py" "$root/bench/gpu/hf_baseline.py" --layers 4 --json "$out/hf.json"
stage bench_bf16 60 "$bin/gpu_bench" --dtype bf16 --layers 4 --streams 8 --steps 32 --tmp "$build" \
    --json "$out/bench_bf16.json"

# ---- report -------------------------------------------------------------------------------------
if [[ $only == *" report "* ]]; then
    if ! "$py" "$root/bench/gpu/report.py" "$out"; then
        say "report.py failed: writing a plain summary"
        { echo "# GPU check (report.py failed; raw stage table)"; echo; cat "$out/env.txt" 2>/dev/null; echo;
          cat "$stages"; } > "$out/gpu_results.md"
        failed=1
    fi
    say "report: $out/gpu_results.md"
    cat "$out/gpu_results.md"
fi
say "done; stages:"
cat "$stages"
exit $failed
