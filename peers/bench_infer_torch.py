"""Peer for `vlmscale bench infer`: the same configurations timed in PyTorch / HF transformers on CPU.

CLIP ViT-L/14-336 (`CLIPVisionModel`, hidden states up to block 23 as LLaVA's select layer -2 needs) and a
Qwen-1.5 shape (`Qwen2ForCausalLM`, random weights, eager attention), f32 (or bf16 with `--dtype bfloat16`), 2
threads. Per V in
{1, 4, 16, 36, 64, 144, 576} with Q = 50: prefill of Q + V input embeddings (LM head on the last position
only, as generation needs), then decode steps with the KV cache. QueCC's query embedding is a prefill of
the Q question tokens, reported once. Nothing is compared numerically; on a shared, loaded machine the
timings are noisy.

Usage: python3 peers/bench_infer_torch.py [--size 0.5b|1.8b] [--visual-tokens 1,4,...]
           [--text-tokens 50] [--decode-steps 8] [--repeats 1] [--threads 2] [--dtype float32|bfloat16]
Prints one JSON line per measurement.
"""
import argparse
import json
import time

import torch
from transformers import CLIPVisionConfig, CLIPVisionModel, Qwen2Config, Qwen2ForCausalLM

SHAPES = {
    "0.5b": dict(hidden_size=1024, intermediate_size=2816, num_hidden_layers=24, num_attention_heads=16,
                 num_key_value_heads=16, tie_word_embeddings=True),
    "1.8b": dict(hidden_size=2048, intermediate_size=5504, num_hidden_layers=24, num_attention_heads=16,
                 num_key_value_heads=16, tie_word_embeddings=False),
}


def best_ms(fn, repeats):
    best = float("inf")
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        fn()
        best = min(best, (time.perf_counter() - t) * 1e3)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="0.5b", choices=sorted(SHAPES))
    ap.add_argument("--visual-tokens", default="1,4,16,36,64,144,576")
    ap.add_argument("--text-tokens", type=int, default=50)
    ap.add_argument("--decode-steps", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                    help="weights and activations (bfloat16: for comparison with vlmscale's bf16 weights)")
    a = ap.parse_args()
    dtype = getattr(torch, a.dtype)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)

    vision = CLIPVisionModel(CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                              num_attention_heads=16, image_size=336, patch_size=14,
                                              hidden_act="quick_gelu")).eval().to(dtype)
    tower = getattr(vision, "vision_model", vision)  # transformers 5 drops the `vision_model` level
    tower.encoder.layers = tower.encoder.layers[:23]  # LLaVA runs 23 blocks
    pixels = torch.randn(1, 3, 336, 336, dtype=dtype)
    with torch.no_grad():
        vision(pixel_values=pixels, output_hidden_states=True)  # warm-up
        ms = best_ms(lambda: vision(pixel_values=pixels, output_hidden_states=True), a.repeats)
    print(json.dumps({"peer": "pytorch", "what": "vision_tower_23_blocks", "ms": ms, "threads": a.threads,
                      "dtype": a.dtype}), flush=True)
    del vision

    cfg = Qwen2Config(vocab_size=151936, max_position_embeddings=32768, rope_theta=1e6, rms_norm_eps=1e-6,
                      attn_implementation="eager", **SHAPES[a.size])
    llm = Qwen2ForCausalLM(cfg).eval().to(dtype)
    h = cfg.hidden_size
    q = a.text_tokens
    with torch.no_grad():
        ids = torch.zeros(1, q, dtype=torch.long)
        llm(input_ids=ids)  # warm-up
        ms = best_ms(lambda: llm.model(input_ids=ids), a.repeats)
        print(json.dumps({"peer": "pytorch", "what": "query_embedding", "q": q, "ms": ms}), flush=True)
        for v in [int(x) for x in a.visual_tokens.split(",")]:
            embeds = (torch.randn(1, q + v, h) * 0.02).to(dtype)

            def prefill():
                out = llm.model(inputs_embeds=embeds, use_cache=True)
                llm.lm_head(out.last_hidden_state[:, -1:])
                return out.past_key_values

            prefill_ms = best_ms(prefill, a.repeats)
            past = prefill()
            step = torch.zeros(1, 1, dtype=torch.long)
            t = time.perf_counter()
            for _ in range(a.decode_steps):
                out = llm(input_ids=step, past_key_values=past, use_cache=True, logits_to_keep=1)
                past = out.past_key_values
            decode = (time.perf_counter() - t) * 1e3 / max(1, a.decode_steps)
            print(json.dumps({"peer": "pytorch", "what": "llm", "size": a.size, "v": v, "q_plus_v": q + v,
                              "prefill_ms": prefill_ms, "decode_ms_per_token": decode, "dtype": a.dtype}), flush=True)


if __name__ == "__main__":
    main()
