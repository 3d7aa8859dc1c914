#!/usr/bin/env bash
# bench/gpu/pack_deps.sh - run on the development machine (not the GPU one): copies the headers and
# libraries of utf8proc and cJSON into .gpu-deps/ (git-ignored), which the device tool carries to
# the GPU machine, where those -dev packages may be missing. run.sh passes -DQN_DEPS_PREFIX=.gpu-deps
# to cmake when the folder exists (the top CMakeLists.txt looks there first).
#
# Static libraries are preferred; Debian ships cJSON only as a shared library, so libcjson.so and
# its soname link are copied instead (it needs nothing newer than glibc 2.14; run.sh puts
# .gpu-deps/lib on LD_LIBRARY_PATH and the build tree's RPATH points there too).
# Also records the commit the tree is at (.gpu-deps/commit.txt): the GPU machine gets the working
# tree without .git.
set -euo pipefail
cd "$(dirname "$0")/../.."
dest=.gpu-deps
rm -rf "$dest"
mkdir -p "$dest/include/cjson" "$dest/lib"

find_header() { # name -> first existing path
    local d
    for d in /usr/include /usr/local/include /usr/include/x86_64-linux-gnu; do
        if [ -f "$d/$1" ]; then echo "$d/$1"; return 0; fi
    done
    return 1
}

find_lib() { # libname (no prefix/suffix) -> prints the static archive, else the shared library
    local a so
    a=$(cc -print-file-name="lib$1.a")
    if [ -f "$a" ]; then echo "$a"; return 0; fi
    so=$(cc -print-file-name="lib$1.so")
    if [ -e "$so" ]; then readlink -f "$so"; return 0; fi
    return 1
}

copy_lib() { # libname
    local f base soname
    if ! f=$(find_lib "$1"); then
        echo "pack_deps.sh: lib$1 not found (apt package lib$1-dev)" >&2
        exit 1
    fi
    base=$(basename "$f")
    cp "$f" "$dest/lib/$base"
    case "$base" in
    *.a) ;;
    *) # shared: add the soname link (runtime) and the plain .so link (linker)
        soname=$(objdump -p "$f" | awk '/SONAME/ {print $2}')
        [ -n "$soname" ] && [ "$soname" != "$base" ] && ln -sf "$base" "$dest/lib/$soname"
        ln -sf "$base" "$dest/lib/lib$1.so"
        ;;
    esac
    echo "  $base"
}

h=$(find_header utf8proc.h) || { echo "pack_deps.sh: utf8proc.h not found (apt package libutf8proc-dev)" >&2; exit 1; }
cp "$h" "$dest/include/"
h=$(find_header cjson/cJSON.h) || { echo "pack_deps.sh: cjson/cJSON.h not found (apt package libcjson-dev)" >&2; exit 1; }
cp "$h" "$dest/include/cjson/"
echo "pack_deps.sh: libraries"
copy_lib utf8proc
copy_lib cjson

{
    echo "commit $(git rev-parse HEAD 2>/dev/null || echo unknown)"
    echo "uncommitted_files $(git status --porcelain 2>/dev/null | wc -l)"
    echo "packed $(date -u +%Y-%m-%dT%H:%M:%SZ)"
} > "$dest/commit.txt"

echo "pack_deps.sh: wrote $dest ($(du -sh "$dest" | cut -f1)):"
find "$dest" | sort | sed 's/^/  /'
