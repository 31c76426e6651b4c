"""llama.cpp's `llama-server` as the peer of `vlmscale bench serve` (issue 20).

One subcommand:

  gguf    Writes the LLM of a checkpoint's safetensors (HF Qwen2 names, F32 or BF16; other tensors such
          as the vision tower are ignored) as a BF16 GGUF with `llama_cpp_peer.py`'s writer (the
          `qwen2.*` metadata, GGML's tensor names, a dummy SPM vocabulary of the model's vocab size:
          `bench serve` sends llama-server its prompts as token ids). Runs in the llama.cpp peer's
          virtual environment (made on first use, with `gguf` and `numpy` from PyPI). Prints one JSON
          line: {"gguf": PATH} or {"error": MESSAGE}.

`llama-server` itself is built by `python3 peers/llama_cpp_peer.py build` (into
`$XDG_CACHE_HOME/vlmscale/llama.cpp-<version>/build/bin`, else `~/.cache/...`), where `bench serve`
looks for it; `--llama-server PATH` there takes any other binary.
"""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_cpp_peer as peer  # noqa: E402


def gguf(a, cache):
    py = peer.venv_python(cache)
    if Path(sys.prefix).resolve() != (cache / "venv").resolve():
        cache.mkdir(parents=True, exist_ok=True)
        py = peer.ensure_venv(cache, cache / "build.log")
        # gguf and numpy live in the peer's virtual environment: continue there.
        os.execv(str(py), [str(py), os.path.abspath(__file__)] + sys.argv[1:])
    cfg = json.loads(Path(a.config).read_text())
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    peer.write_gguf(peer.read_safetensors(a.weights), cfg, tmp)
    tmp.replace(out)
    print(json.dumps({"gguf": str(out)}), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gguf")
    g.add_argument("--cache")
    g.add_argument("--weights", required=True, help="safetensors with the LLM's HF-named weights")
    g.add_argument("--config", required=True, help="the checkpoint's config.json")
    g.add_argument("--out", required=True, help="the GGUF file to write")
    a = ap.parse_args()
    cache = peer.cache_dir(a.cache)
    try:
        gguf(a, cache)
    except (subprocess.CalledProcessError, OSError, ValueError, KeyError) as e:
        print(json.dumps({"error": f"{e} (log: {cache / 'build.log'})"}))
        sys.exit(1)


if __name__ == "__main__":
    main()
