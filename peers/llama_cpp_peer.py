"""llama.cpp as the CPU peer of `vlmscale bench infer --weights ...` (issue 21).

Two subcommands:

  build   Builds `llama-bench`, `llama-quantize` and `llama-server` (the last for `bench serve`'s
          comparison; not used here) from the llama.cpp source vendored in the pinned
          `llama-cpp-python` sdist from PyPI (`vendor/llama.cpp`), with `cmake` and `ninja` from PyPI in a
          virtual environment, into a cache folder outside the repository (default
          `$XDG_CACHE_HOME/vlmscale/llama.cpp-<version>`, else `~/.cache/...`; `--cache DIR` overrides).
          A finished build is reused. Prints one JSON line: {"bin": DIR} or {"error": MESSAGE}.

  bench   Writes the LLM weights of a safetensors file (HF Qwen2 names, as `vlmscale bench infer`
          exports them) as a BF16 GGUF with the `gguf` package, quantises it to Q8_0 and Q4_0 with
          `llama-quantize`, and runs `llama-bench` per format: prefill (`-p`) at each given prompt length,
          decode (`-n`) at depth 0 and at `--depth` (`-d`). Prints one JSON line per measurement:
          {"format", "test": "prefill"|"decode", "tokens", "depth", "ms", "ms_mean"} (prefill: ms for
          the prompt; decode: ms per token; `ms` the best of the `-r` repetitions, as `bench infer`
          reports its own, `ms_mean` their mean), {"note": MESSAGE} when a format had to be rerun
          without weight repacking (a SIGILL in ggml's AMX int8 kernels), or {"error": MESSAGE}.

The GGUF has the `qwen2.*` metadata keys, GGML's tensor names (`token_embd`, `blk.N.attn_q`, ...,
`output_norm`) and a dummy SPM vocabulary of the model's vocab size (enough for `llama-bench`, which
feeds random tokens). Nothing here is compared numerically.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

LLAMA_CPP_PYTHON = "0.3.36"
GGUF = "0.19.0"
# llama-server is not used here: it is built for `bench serve`'s comparison, into the same bin folder.
TARGETS = ("llama-bench", "llama-quantize", "llama-server")


def cache_dir(arg):
    if arg:
        return Path(arg)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "vlmscale" / f"llama.cpp-{LLAMA_CPP_PYTHON}"


def run(cmd, log, **kw):
    with open(log, "a") as f:
        f.write("$ " + " ".join(str(c) for c in cmd) + "\n")
        f.flush()
        rc = subprocess.run([str(c) for c in cmd], stdout=f, stderr=subprocess.STDOUT, **kw).returncode
    if rc != 0:
        tail = " | ".join(Path(log).read_text(errors="replace").strip().splitlines()[-3:])
        raise ValueError(f"{Path(str(cmd[0])).name} exited with {rc}: {tail}")


def venv_python(cache):
    return cache / "venv" / "bin" / "python"


def ensure_venv(cache, log):
    py = venv_python(cache)
    if not py.exists():
        run([sys.executable, "-m", "venv", cache / "venv"], log)
    stamp = cache / "venv" / "tools.ok"
    if not stamp.exists():
        run([py, "-m", "pip", "install", "--quiet", "cmake", "ninja", "scikit-build-core", f"gguf=={GGUF}", "numpy", "safetensors"], log)
        stamp.write_text("ok\n")
    return py


def build(cache):
    cache.mkdir(parents=True, exist_ok=True)
    bindir = cache / "build" / "bin"
    if all((bindir / t).exists() for t in TARGETS):
        return bindir
    log = cache / "build.log"
    py = ensure_venv(cache, log)
    src = cache / "src"
    if not (src / "vendor" / "llama.cpp" / "CMakeLists.txt").exists():
        dl = cache / "sdist"
        dl.mkdir(exist_ok=True)
        run([py, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--no-build-isolation",
             f"llama-cpp-python=={LLAMA_CPP_PYTHON}", "-d", dl], log)
        tgz = next(dl.glob("llama_cpp_python-*.tar.gz"))
        tmp = cache / "src.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        with tarfile.open(tgz) as t:
            t.extractall(tmp)
        shutil.rmtree(src, ignore_errors=True)
        next(tmp.iterdir()).rename(src)
        shutil.rmtree(tmp, ignore_errors=True)
    bin_venv = cache / "venv" / "bin"
    env = dict(os.environ, PATH=f"{bin_venv}{os.pathsep}{os.environ.get('PATH', '')}")
    # As many jobs as this process may use cores (`taskset -c 1 ...` → 1), not the machine's count.
    jobs = str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    run([bin_venv / "cmake", "-S", src / "vendor" / "llama.cpp", "-B", cache / "build", "-G", "Ninja",
         "-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=ON", "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF",
         "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=ON", "-DBUILD_SHARED_LIBS=OFF"], log, env=env)
    run(["nice", "-n", "10", bin_venv / "cmake", "--build", cache / "build", "-j", jobs,
         "--target", *TARGETS], log, env=env)
    return bindir


def read_safetensors(path):
    """{name: float32 numpy array} from a safetensors file of F32 / BF16 tensors (no torch needed)."""
    import numpy as np
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        base = 8 + n
    data = np.memmap(path, dtype=np.uint8, mode="r")
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        raw = data[base + a:base + b]
        if info["dtype"] == "F32":
            arr = raw.view(np.float32)
        elif info["dtype"] == "BF16":
            arr = (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            raise ValueError(f"tensor {name}: dtype {info['dtype']} not handled")
        out[name] = arr.reshape(info["shape"])
    return out


def to_bf16_bytes(x):
    """float32 array → its bfloat16 values (round to nearest even) as a uint8 array of shape (..., 2·cols)."""
    import numpy as np
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return r.view(np.uint8).reshape(*x.shape[:-1], x.shape[-1] * 2)


def write_gguf(weights, cfg, path):
    """The Qwen2 LLM in `weights` (HF names) as a BF16 GGUF (1-D tensors F32), with a dummy vocabulary."""
    import gguf
    import numpy as np
    w = gguf.GGUFWriter(str(path), "qwen2")
    w.add_name("vlmscale random Qwen2")
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_head_count_kv(cfg["num_key_value_heads"])
    # transformers ≥ 5 writes it under `rope_parameters`.
    w.add_rope_freq_base(cfg.get("rope_theta") or cfg["rope_parameters"]["rope_theta"])
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_file_type(gguf.LlamaFileType.MOSTLY_BF16)
    vocab = cfg["vocab_size"]
    w.add_tokenizer_model("llama")
    w.add_token_list(["<unk>", "<s>", "</s>"] + [f"t{i}" for i in range(3, vocab)])
    w.add_token_scores([0.0] * vocab)
    w.add_token_types([gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
                      + [gguf.TokenType.NORMAL] * (vocab - 3))
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    names = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}

    def put(gname, arr):
        if arr.ndim == 2:
            w.add_tensor(gname, to_bf16_bytes(arr), raw_dtype=gguf.GGMLQuantizationType.BF16)
        else:
            w.add_tensor(gname, np.ascontiguousarray(arr, dtype=np.float32))

    put("token_embd.weight", weights["model.embed_tokens.weight"])
    for i in range(cfg["num_hidden_layers"]):
        for hf, g in names.items():
            for kind in ("weight", "bias"):
                key = f"model.layers.{i}.{hf}.{kind}"
                if key in weights:
                    put(f"blk.{i}.{g}.{kind}", weights[key])
    put("output_norm.weight", weights["model.norm.weight"])
    if "lm_head.weight" in weights:
        put("output.weight", weights["lm_head.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def bench(a, cache):
    bindir = build(cache)
    py = venv_python(cache)
    if Path(sys.prefix).resolve() != (cache / "venv").resolve():
        # gguf and numpy live in the build's virtual environment: continue there.
        os.execv(str(py), [str(py), os.path.abspath(__file__)] + sys.argv[1:])
    cfg = json.loads(Path(a.config).read_text())
    work = Path(a.workdir)
    work.mkdir(parents=True, exist_ok=True)
    log = work / "llama.log"
    files = {"bf16": work / "model-bf16.gguf"}
    write_gguf(read_safetensors(a.weights), cfg, files["bf16"])
    formats = [f.strip() for f in a.formats.split(",") if f.strip()]
    for f in formats:
        if f != "bf16":
            files[f] = work / f"model-{f}.gguf"
            # --pure: every matrix in the format (llama-quantize otherwise keeps some at higher precision).
            run([bindir / "llama-quantize", "--pure", files["bf16"], files[f], f.upper()], log)
    def bench_run(cmd):
        out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
        with open(log, "a") as lf:
            lf.write("$ " + " ".join(str(c) for c in cmd) + "\n" + out.stderr)
        return out

    for f in formats:
        common = [bindir / "llama-bench", "-m", files[f], "-t", str(a.threads), "-r", str(a.repeats), "-o", "json"]
        tests = [["-p", a.prompts, "-n", "0"], ["-p", "0", "-n", str(a.decode_tokens), "-d", f"0,{a.depth}"]]
        repack = []
        for test in tests:
            out = bench_run(common + repack + test)
            if out.returncode == -signal.SIGILL and not repack:
                # ggml's AMX int8 kernels (the extra buffer type that weight repacking selects on
                # AMX CPUs) can die of SIGILL at their first tile instruction (the tile configuration
                # or the thread's tile-data permission is missing: ggml-org/llama.cpp pull 26954).
                # This format's tests run on llama.cpp's other CPU kernels (AVX-512 / VNNI) instead.
                print(json.dumps({"note": f"{f}: llama-bench died of SIGILL (ggml's AMX int8 path); "
                                          "its tests run with --repack 0 (no AMX / repacked buffers)"}), flush=True)
                repack = ["--repack", "0"]
                out = bench_run(common + repack + test)
            if out.returncode != 0:
                tail = " | ".join(out.stderr.strip().splitlines()[-3:])
                raise ValueError(f"llama-bench ({f}) exited with {out.returncode}: {tail}")
            for r in json.loads(out.stdout):
                samples = r.get("samples_ns") or [r["avg_ns"]]
                best, mean = min(samples) / 1e6, r["avg_ns"] / 1e6
                if r["n_prompt"] > 0:
                    row = {"format": f, "test": "prefill", "tokens": r["n_prompt"], "depth": r.get("n_depth", 0),
                           "ms": best, "ms_mean": mean}
                else:
                    n = r["n_gen"]
                    row = {"format": f, "test": "decode", "tokens": n, "depth": r.get("n_depth", 0),
                           "ms": best / n, "ms_mean": mean / n}
                row["build"] = r.get("build_commit", "")
                print(json.dumps(row), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--cache")
    r = sub.add_parser("bench")
    r.add_argument("--cache")
    r.add_argument("--weights", required=True, help="safetensors with the LLM's HF-named weights")
    r.add_argument("--config", required=True, help="the LLM's HF config.json")
    r.add_argument("--workdir", required=True, help="folder for the GGUF files (several GB)")
    r.add_argument("--formats", default="bf16,q8_0,q4_0")
    r.add_argument("--prompts", default="51,626", help="prefill lengths (llama-bench -p)")
    r.add_argument("--depth", type=int, default=626, help="decode after this many tokens (llama-bench -d)")
    r.add_argument("--decode-tokens", type=int, default=16)
    r.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    r.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    cache = cache_dir(a.cache)
    try:
        if a.cmd == "build":
            print(json.dumps({"bin": str(build(cache))}))
        else:
            bench(a, cache)
    except (subprocess.CalledProcessError, OSError, StopIteration, ValueError, KeyError) as e:
        print(json.dumps({"error": f"{e} (log: {cache / 'build.log'})"}))
        sys.exit(1)


if __name__ == "__main__":
    main()
