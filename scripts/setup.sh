#!/usr/bin/env bash
# scripts/setup.sh - installs everything qnext needs on Debian 12, by name. Idempotent.
#
#   scripts/setup.sh          Debian packages + the test venv (pytest, openai, grpcio, ...)
#   scripts/setup.sh --dev    also torch + transformers + tokenizers (golden-fixture and tokenizer
#                             reference scripts; not needed by CI)
#
# The Python venv lives outside the source tree: $QNEXT_VENV (default ~/.cache/qnext/venv).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dev=0
for a in "$@"; do
    case "$a" in
    --dev) dev=1 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option $a" >&2; exit 2 ;;
    esac
done

sudo=""
if [ "$(id -u)" != 0 ]; then sudo=sudo; fi

# Build tools, engine libraries, service and gateway libraries, test tools.
pkgs=(
    build-essential cmake pkg-config git clang libclang-rt-14-dev
    libutf8proc-dev libcjson-dev libedit-dev
    libgrpc-dev grpc-proto protobuf-compiler protobuf-c-compiler libprotobuf-c-dev nanopb libnanopb-dev
    libh2o-evloop-dev libssl-dev libsqlite3-dev zlib1g-dev
    check python3 python3-venv python3-dev wrk curl
)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup.sh: installing Debian packages: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

venv=${QNEXT_VENV:-$HOME/.cache/qnext/venv}
if [ ! -x "$venv/bin/python" ]; then
    echo "setup.sh: creating Python venv $venv"
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$here/requirements-test.txt"
if [ $dev = 1 ]; then
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$here/requirements-dev.txt"
fi
echo "setup.sh: done (venv: $venv)"
