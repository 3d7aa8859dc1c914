#!/usr/bin/env bash
# scripts/demo.sh - the whole stack on one machine: qnext-engine (gRPC) + qnext-gateway (OpenAI REST).
#
#   scripts/demo.sh            build if needed (Release), make the demo model if absent, start both
#                              servers, print and run a curl example, stay up until Ctrl-C
#   scripts/demo.sh --check    the same, non-interactively: exit 0 once the curl example succeeded
#                              (both servers are stopped cleanly either way)
#
# Options (or environment variables):
#   --model DIR        MODEL          model folder (default: $BUILD_DIR/demo-model, written by
#                                     `qnext demo-model`: a small random-weight Qwen3-Next with the
#                                     real tokenizer, so the answers are gibberish)
#   --port N           GATEWAY_PORT   REST port (default: a free port)
#   --engine-port N    ENGINE_PORT    gRPC port (default: a free port)
#   --build-dir DIR    BUILD_DIR      CMake build folder (default: build-release)
#   --threads N        THREADS        engine CPU threads (default: all cores)
#   ENGINE_ARGS  extra qnext-engine flags (default: "--max-model-len 32768 --kv-cache-size 512M")
#   API_KEY      when set, the gateway requires "Authorization: Bearer $API_KEY"
# Needs: cmake, a C compiler, the packages of scripts/setup.sh, curl.
set -euo pipefail
cd "$(dirname "$0")/.."

check=0
MODEL=${MODEL:-}
GATEWAY_PORT=${GATEWAY_PORT:-}
ENGINE_PORT=${ENGINE_PORT:-}
BUILD_DIR=${BUILD_DIR:-build-release}
THREADS=${THREADS:-0}
ENGINE_ARGS=${ENGINE_ARGS:---max-model-len 32768 --kv-cache-size 512M}
while [ $# -gt 0 ]; do
    case "$1" in
    --check) check=1 ;;
    --model) MODEL=$2; shift ;;
    --port) GATEWAY_PORT=$2; shift ;;
    --engine-port) ENGINE_PORT=$2; shift ;;
    --build-dir) BUILD_DIR=$2; shift ;;
    --threads) THREADS=$2; shift ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "demo.sh: unknown option $1 (--help)" >&2; exit 2 ;;
    esac
    shift
done

say() { echo "demo.sh: $*" >&2; }

# ---- build ----------------------------------------------------------------------------------------
bin=$BUILD_DIR/bin
# (QN_WERROR=OFF: a demo must not fail on warnings a newer compiler or -O3 finds)
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
    say "configuring $BUILD_DIR (Release)"
    cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DQN_WERROR=OFF -DQN_CUDA=OFF -DQN_BUILD_TESTS=OFF \
        -DQN_BUILD_BENCH=OFF >/dev/null
fi
say "building qnext, qnext-engine, qnext-gateway in $BUILD_DIR"
cmake --build "$BUILD_DIR" -j "$(nproc)" --target qnext qnext-engine qnext-gateway >/dev/null ||
    { say "build failed (is the service and gateway tool chain installed? scripts/setup.sh)"; exit 1; }

# ---- model ----------------------------------------------------------------------------------------
if [ -z "$MODEL" ]; then
    MODEL=$BUILD_DIR/demo-model
    if [ ! -f "$MODEL/config.json" ]; then
        say "writing the demo model to $MODEL"
        "$bin/qnext" demo-model --out "$MODEL"
    fi
fi
[ -f "$MODEL/config.json" ] || { say "$MODEL has no config.json"; exit 1; }

# ---- ports ----------------------------------------------------------------------------------------
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
    local p
    for _ in $(seq 200); do
        p=$((20000 + RANDOM % 30000))
        if ! port_busy "$p"; then echo "$p"; return; fi
    done
    say "no free port found"; exit 1
}
ENGINE_PORT=${ENGINE_PORT:-$(free_port)}
GATEWAY_PORT=${GATEWAY_PORT:-$(free_port)}
[ "$ENGINE_PORT" != "$GATEWAY_PORT" ] || GATEWAY_PORT=$(free_port)

# ---- servers --------------------------------------------------------------------------------------
logdir=$(mktemp -d "${TMPDIR:-/tmp}/qnext-demo-XXXXXX")
engine_pid=""
gateway_pid=""
stop_all() {
    local rc=$?
    trap - EXIT INT TERM
    for pid in $gateway_pid $engine_pid; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in $gateway_pid $engine_pid; do wait "$pid" 2>/dev/null || true; done
    if [ $rc -eq 0 ]; then rm -rf "$logdir"; else say "logs kept in $logdir"; fi
    exit $rc
}
trap stop_all EXIT
trap 'say "stopping"; exit 0' INT TERM

say "starting qnext-engine on 127.0.0.1:$ENGINE_PORT (model $MODEL)"
# shellcheck disable=SC2086 # ENGINE_ARGS is a list of flags
"$bin/qnext-engine" --model "$MODEL" --listen "127.0.0.1:$ENGINE_PORT" --threads "$THREADS" $ENGINE_ARGS \
    >"$logdir/engine.log" 2>&1 &
engine_pid=$!
key_args=()
if [ -n "${API_KEY:-}" ]; then key_args=(--api-key "$API_KEY"); fi
say "starting qnext-gateway on 127.0.0.1:$GATEWAY_PORT"
"$bin/qnext-gateway" --host 127.0.0.1 --port "$GATEWAY_PORT" --engine "127.0.0.1:$ENGINE_PORT" \
    --load-poll-interval 0.2 "${key_args[@]}" >"$logdir/gateway.log" 2>&1 &
gateway_pid=$!

base="http://127.0.0.1:$GATEWAY_PORT"
ready=0
for _ in $(seq 600); do
    if ! kill -0 "$engine_pid" 2>/dev/null; then say "qnext-engine exited:"; cat "$logdir/engine.log" >&2; exit 1; fi
    if ! kill -0 "$gateway_pid" 2>/dev/null; then say "qnext-gateway exited:"; cat "$logdir/gateway.log" >&2; exit 1; fi
    if [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/ready")" = 200 ]; then ready=1; break; fi
    sleep 0.2
done
[ $ready = 1 ] || { say "the gateway did not become ready in 120 s"; exit 1; }

auth=()
if [ -n "${API_KEY:-}" ]; then auth=(-H "Authorization: Bearer $API_KEY"); fi
model_id=$(curl -s "${auth[@]}" "$base/v1/models" | sed -n 's/.*"id" *: *"\([^"]*\)".*/\1/p' | head -1)
body='{"model": "'"$model_id"'", "messages": [{"role": "user", "content": "Hello! Who are you?"}], "max_tokens": 32}'
auth_text=""
if [ -n "${API_KEY:-}" ]; then auth_text=" -H 'Authorization: Bearer \$API_KEY'"; fi
cat <<EOF

qnext is up: gateway $base (OpenAI API), engine gRPC 127.0.0.1:$ENGINE_PORT, model "$model_id".
Try:

  curl $base/v1/chat/completions -H 'Content-Type: application/json'$auth_text \\
       -d '$body'

EOF
say "running it once:"
if ! out=$(curl -sS -f "${auth[@]}" -H 'Content-Type: application/json' -d "$body" "$base/v1/chat/completions"); then
    say "the example request failed"
    exit 1
fi
echo "$out"
echo "$out" | grep -q '"chat.completion"' || { say "unexpected answer"; exit 1; }
if [ $check = 1 ]; then
    say "check passed"
    exit 0
fi
say "press Ctrl-C to stop both servers"
wait "$gateway_pid" "$engine_pid"
