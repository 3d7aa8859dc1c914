#!/usr/bin/env bash
# scripts/test.sh - builds qnext and runs every test suite. CI runs exactly this (via .ci/run).
#
# Stages (each must pass; the script stops at the first failure and exits non-zero):
#   1. build/        RelWithDebInfo, -Werror; ctest: unit + golden suites
#   2. build-asan/   the same code under AddressSanitizer + UndefinedBehaviorSanitizer; ctest: unit + golden
#   3. build-fuzz/   clang + libFuzzer; each fuzz target runs briefly on its seed corpus
#   4. e2e           pytest against qnext-engine / qnext-gateway started on free ports (when built); the
#                    API tests use the real engine on a demo model (build/demo-model), the rest the fakes
# Environment: JOBS (default: nproc), QNEXT_VENV (see setup.sh), QNEXT_FUZZ_SECONDS (default 20),
# QNEXT_SKIP (space-separated stage names to skip locally, e.g. "asan fuzz"; CI never sets it).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${JOBS:-$(nproc)}
venv=${QNEXT_VENV:-$HOME/.cache/qnext/venv}
skip=" ${QNEXT_SKIP:-} "
t0=$(date +%s)
stage() { echo; echo "==== $* ($(( $(date +%s) - t0 ))s) ===="; }

stage "1. build + unit/golden tests"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQN_WERROR=ON >/dev/null
cmake --build build -j "$jobs"
ctest --test-dir build -L 'unit|golden' --no-tests=error --output-on-failure -j "$jobs"

if [[ $skip != *" asan "* ]]; then
    stage "2. ASan+UBSan build + unit/golden tests"
    cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DQN_SANITIZE=ON -DQN_CUDA=OFF -DQN_BUILD_BENCH=OFF \
        -DCMAKE_C_FLAGS_DEBUG="-O1 -g" >/dev/null
    cmake --build build-asan -j "$jobs"
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        ctest --test-dir build-asan -L 'unit|golden' --no-tests=error --output-on-failure -j "$jobs"
fi

if [[ $skip != *" fuzz "* ]]; then
    stage "3. libFuzzer targets"
    CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQN_FUZZ=ON -DQN_CUDA=OFF \
        -DQN_GATEWAY=OFF -DQN_BUILD_BENCH=OFF -DQN_FUZZ_SECONDS="${QNEXT_FUZZ_SECONDS:-20}" >/dev/null
    cmake --build build-fuzz -j "$jobs"
    ctest --test-dir build-fuzz -L fuzz --no-tests=error --output-on-failure -j "$jobs"
fi

if [[ $skip != *" e2e "* ]] && [ -d tests/e2e ] && ls tests/e2e/test_*.py >/dev/null 2>&1; then
    stage "4. end-to-end tests (pytest)"
    if [ ! -x "$venv/bin/pytest" ]; then
        echo "test.sh: no pytest in $venv: run scripts/setup.sh first" >&2
        exit 1
    fi
    # The engine-agnostic tests run against the real qnext-engine on the demo model (written once
    # into build/demo-model, again whenever qnext is rebuilt); tests that need scripted output
    # keep using the fakes. A small context and KV cache keep the engine's start-up cheap.
    if [ -x build/bin/qnext-engine ]; then
        if [ ! -f build/demo-model/config.json ] || [ build/bin/qnext -nt build/demo-model/config.json ]; then
            rm -rf build/demo-model
            build/bin/qnext demo-model --out build/demo-model
        fi
        export QNEXT_ENGINE_BIN="$PWD/build/bin/qnext-engine" QNEXT_ENGINE_MODEL="$PWD/build/demo-model"
        export QNEXT_ENGINE_ARGS="${QNEXT_ENGINE_ARGS:---max-model-len 4096 --kv-cache-size 256M}"
        # the engine's forced-output test hook: prompts with a tests/fixtures/engine/e2e_forced.json
        # marker get real tool calls through the real parsers (no other prompt is affected)
        export QNEXT_TEST_FORCED_OUTPUT="$PWD/tests/fixtures/engine/e2e_forced.json"
        echo "test.sh: e2e against the real engine ($QNEXT_ENGINE_BIN, $QNEXT_ENGINE_MODEL)"
    else
        echo "test.sh: build/bin/qnext-engine was not built (is libgrpc-dev installed? run scripts/setup.sh)" >&2
        exit 1
    fi
    set +e
    QNEXT_BIN="$PWD/build/bin" "$venv/bin/pytest" -q tests/e2e
    rc=$?
    set -e
    if [ $rc -eq 5 ]; then echo "test.sh: pytest collected no tests: that is a failure" >&2; exit 1; fi
    [ $rc -eq 0 ] || exit $rc
fi

stage "all tests passed"
