"""A real language model served on 127.0.0.1: llama.cpp's llama-server, or
llama-cpp-python's OpenAI-compatible server, each on SmolLM2-135M-Instruct.

`make test-local-model` builds both and fetches the weights once, with
scripts/local_model.sh, into a cache outside the repository, and passes their
paths in LTM_LOCAL_LLAMA_SERVER, LTM_LOCAL_LLAMA_PYTHON and LTM_LOCAL_MODEL_FILE.
"""

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from tests.servers import free_port

LLAMA_SERVER = os.environ.get("LTM_LOCAL_LLAMA_SERVER", "")
LLAMA_PYTHON = os.environ.get("LTM_LOCAL_LLAMA_PYTHON", "")
MODEL_FILE = os.environ.get("LTM_LOCAL_MODEL_FILE", "")
# The model's context: the memory call's prompt and answer fit well within it.
CONTEXT_TOKENS = 8192
STARTUP_SECONDS = 180


def available(server: str) -> bool:
    program = {"llama-server": LLAMA_SERVER, "llama-cpp-python": LLAMA_PYTHON}[server]
    return bool(MODEL_FILE and program) and all(
        Path(path).exists() for path in (MODEL_FILE, program)
    )


def _command(server: str, port: int) -> list[str]:
    threads = str(os.cpu_count() or 2)
    if server == "llama-server":
        # --jinja: the model's own chat template, which tool calls need.
        return [
            LLAMA_SERVER,
            *("--model", MODEL_FILE, "--host", "127.0.0.1", "--port", str(port)),
            *("--ctx-size", str(CONTEXT_TOKENS), "--parallel", "1"),
            *("--threads", threads, "--jinja", "--no-webui"),
        ]
    return [
        LLAMA_PYTHON,
        *("-m", "llama_cpp.server", "--model", MODEL_FILE),
        *("--host", "127.0.0.1", "--port", str(port)),
        *("--n_ctx", str(CONTEXT_TOKENS), "--n_threads", threads),
    ]


@contextmanager
def serve(server: str, log_path: Path):
    """The server's OpenAI base URL, once it answers; stopped afterwards."""
    port = free_port()
    with open(log_path, "w") as log:
        process = subprocess.Popen(  # noqa: S603 - our own paths
            _command(server, port), stdout=log, stderr=subprocess.STDOUT
        )
        try:
            base_url = f"http://127.0.0.1:{port}/v1"
            _wait_until_ready(process, base_url, log_path)
            yield base_url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_ready(process, base_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"the model server exited: {log_path.read_text()[-2000:]}"
            )
        try:
            with urllib.request.urlopen(f"{base_url}/models", timeout=2) as response:
                if json.load(response).get("data"):
                    return
        except (urllib.error.URLError, OSError, ValueError):
            pass
        time.sleep(0.5)
    raise RuntimeError(
        f"the model server did not start: {log_path.read_text()[-2000:]}"
    )
