#!/usr/bin/env python3
"""PyTorch peer of `vlmscale bench train`: the same VLM training step in PyTorch.

The model is the one `train::model::TrainableVlm` trains, rebuilt from a checkpoint directory the Rust
side exported (`train::bench::export_case`):

- `config.json` — the checkpoint writer's own config (HF Qwen2 keys + LLaVA `mm_*` keys + `vlmscale_*`);
  the LLM is `transformers.Qwen2ForCausalLM(Qwen2Config(**config))`;
- `model.safetensors` — the seeded initial weights (HF names `model.*`, `model.mm_projector.*`);
- `batch.safetensors` — one training batch: features `single` (B, G², d), `multi` (B, G², 4d); token
  ids `text_ids` (B, Lt) = prefix ‖ suffix ‖ answer right-padded; `splice_index` (B·(Lt+V)) rows of
  [text embeddings (B·Lt) ; visual embeddings (B·V)] forming the LLM input; `loss_positions` (n),
  `targets` (n); `query_ids` (B, Lq), `query_last` (B) (last non-padding query position).

The compressors follow the paper (arXiv 2411.03312) §4 (QueCC: text_projection, q_proj, depth-wise
conv q_downsample, k_proj/v_proj on multi-level features, windowed nn.MultiheadAttention with 8 heads,
no residual), TokenPacker (bilinear down-sampling, q_proj_1 + LN, same k/v MLPs and windowed attention)
and 2-D average pooling; projector `mlp2x_gelu`. The query embedding is the LLM's last hidden state
(after the final norm) at the last question token, under `torch.no_grad()`. Loss: mean cross-entropy of
the answer tokens. Step: forward, backward, `clip_grad_norm_(1.0)`, `torch.optim.AdamW` (β = (0.9,
0.999), ε = 1e-8, weight decay 0).

Modes (DIRs as `vlmscale bench train --torch` writes them, or `train::bench::BenchCase::export`):
  time  DIR... [--steps K] [--threads 2] [--lr 1e-4]   one JSON line per DIR with s/step (mean of K steps
                                                       after 1 warm-up step) and the step-0 loss
  check DIR [--steps K] [--lr 1e-3]                    writes DIR/expected.json: the loss and gradient norm
                                                       before each of K + 1 AdamW steps, in f64 and f32 (the
                                                       reference values of crates/bench/tests/torch_peer.rs;
                                                       in f64, RMSNorm statistics stay f64 — HF would cast
                                                       them down to f32 — see rms_norm_at_least_f32)
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file
from transformers import Qwen2Config, Qwen2ForCausalLM

QUECC_HEADS = 8  # authors' quecc.py and TokenPacker: nn.MultiheadAttention(d, 8)


def feature_mlp(in_dim, d, norm):
    """Linear(in → d) → GELU → Linear(d → d) [→ LayerNorm(1e-6)], as an nn.Sequential (names 0, 2, 3)."""
    layers = [nn.Linear(in_dim, d), nn.GELU(), nn.Linear(d, d)]
    if norm:
        layers.append(nn.LayerNorm(d, eps=1e-6))
    return nn.Sequential(*layers)


def windows(x, grid, out_grid):
    """(B, G², c) → (B·g², (G/g)², c): the tokens of each g×g window, windows row-major
    (einops `b (i k j l) c -> (b i j) (k l) c`)."""
    b, _, c = x.shape
    w = grid // out_grid
    x = x.reshape(b, out_grid, w, out_grid, w, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b * out_grid * out_grid, w * w, c)


def window_attention(attn, q, k, v, grid, out_grid):
    """queries (B, g², d) each attending to its own window of keys/values (B, G², d) → (B, g², d)."""
    b, n, d = q.shape
    out, _ = attn(q.reshape(b * n, 1, d), windows(k, grid, out_grid), windows(v, grid, out_grid), need_weights=False)
    return out.reshape(b, n, d)


class Quecc(nn.Module):
    """QueCC (paper §4, authors' quecc.py) with kernel = stride = G/√V."""

    def __init__(self, d, text_dim, grid, out_grid, use_query):
        super().__init__()
        self.grid, self.out_grid, self.use_query = grid, out_grid, use_query
        k = grid // out_grid
        if use_query:
            self.text_projection = nn.Sequential(nn.Linear(text_dim, d), nn.LayerNorm(d, eps=1e-6))
        self.q_proj = feature_mlp(d, d, True)
        self.k_proj = feature_mlp(4 * d, d, True)
        self.v_proj = feature_mlp(4 * d, d, True)
        self.q_downsample = nn.Conv2d(d, d, k, stride=k, groups=d)
        self.clip_attn = nn.MultiheadAttention(d, QUECC_HEADS, batch_first=True)

    def forward(self, single, multi, query):
        b, _, d = single.shape
        x = single + self.text_projection(query) if self.use_query else single
        q = self.q_proj(x).transpose(1, 2).reshape(b, d, self.grid, self.grid)
        q = self.q_downsample(q).flatten(2).transpose(1, 2)  # (B, V, d)
        return window_attention(self.clip_attn, q, self.k_proj(multi), self.v_proj(multi), self.grid, self.out_grid)


class TokenPacker(nn.Module):
    """TokenPacker (CircleRadon/TokenPacker builder.py) with ratio G/√V; its `mlp` is the projector."""

    def __init__(self, d, h, grid, out_grid):
        super().__init__()
        self.grid, self.out_grid = grid, out_grid
        self.q_proj_1 = nn.Linear(d, d, bias=False)
        self.ln_q_1 = nn.LayerNorm(d, eps=1e-6)
        self.k_proj_1 = feature_mlp(4 * d, d, False)
        self.ln_k_1 = nn.LayerNorm(d, eps=1e-6)
        self.v_proj_1 = feature_mlp(4 * d, d, False)
        self.ln_v_1 = nn.LayerNorm(d, eps=1e-6)
        self.clip_attn = nn.MultiheadAttention(d, QUECC_HEADS, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(d, h), nn.GELU(), nn.Linear(h, h))

    def forward(self, single, multi):
        b, _, d = single.shape
        g = single.transpose(1, 2).reshape(b, d, self.grid, self.grid)
        q = F.interpolate(g, size=(self.out_grid, self.out_grid), mode="bilinear", align_corners=False)
        q = self.ln_q_1(self.q_proj_1(q.flatten(2).transpose(1, 2)))
        k = self.ln_k_1(self.k_proj_1(multi))
        v = self.ln_v_1(self.v_proj_1(multi))
        return self.mlp(window_attention(self.clip_attn, q, k, v, self.grid, self.out_grid))


class Vlm(nn.Module):
    """Compressor + mlp2x_gelu projector + Qwen2ForCausalLM, with the checkpoint's parameter names."""

    def __init__(self, cfg):
        super().__init__()
        llm_cfg = Qwen2Config(**{k: v for k, v in cfg.items() if not k.startswith(("mm_", "vlmscale_"))})
        llm_cfg._attn_implementation = "sdpa"  # F.scaled_dot_product_attention, HF's CPU default
        self.llm = Qwen2ForCausalLM(llm_cfg)
        self.kind = cfg["vlmscale_compressor"]
        d, h = cfg["mm_hidden_size"], cfg["hidden_size"]
        self.grid = round(math.sqrt(cfg["mm_vision_output_token_count"]))
        self.out_grid = round(math.sqrt(cfg["vlmscale_visual_tokens"]))
        if self.kind in ("quecc", "quecc-noquery"):
            comp = Quecc(d, h, self.grid, self.out_grid, self.kind == "quecc")
            self.mm_projector = nn.Sequential(comp, nn.Linear(d, h), nn.GELU(), nn.Linear(h, h))
        elif self.kind == "tokenpacker":
            self.mm_projector = TokenPacker(d, h, self.grid, self.out_grid)
        elif self.kind == "avgpool":
            self.mm_projector = nn.Sequential(nn.Linear(d, h), nn.GELU(), nn.Linear(h, h))
        else:
            raise ValueError(f"unknown compressor {self.kind!r}")

    def load_checkpoint(self, path):
        """Loads `model.safetensors` (our names) into the modules; every tensor must be used."""
        state = load_file(path)
        mm = {k[len("model.mm_projector."):]: v for k, v in state.items() if k.startswith("model.mm_projector.")}
        llm = {k: v for k, v in state.items() if not k.startswith("model.mm_projector.")}
        self.mm_projector.load_state_dict(mm, strict=True)
        res = self.llm.load_state_dict(llm, strict=False)
        # lm_head.weight is tied to model.embed_tokens.weight (absent from the file, as in HF checkpoints).
        if [k for k in res.missing_keys if k != "lm_head.weight"] or res.unexpected_keys:
            raise ValueError(f"LLM weights do not match: missing {res.missing_keys}, unexpected {res.unexpected_keys}")
        self.llm.tie_weights()

    def visual(self, single, multi, query_ids, query_last):
        if self.kind == "quecc":
            with torch.no_grad():
                hid = self.llm.model(input_ids=query_ids).last_hidden_state  # after the final norm
                query = hid[torch.arange(hid.shape[0]), query_last].unsqueeze(1)  # (B, 1, H)
            mm = self.mm_projector
            return mm[3](mm[2](mm[1](mm[0](single, multi, query))))
        if self.kind == "quecc-noquery":
            mm = self.mm_projector
            return mm[3](mm[2](mm[1](mm[0](single, multi, None))))
        if self.kind == "tokenpacker":
            return self.mm_projector(single, multi)
        b, _, d = single.shape
        g, r = self.out_grid, self.grid // self.out_grid
        pooled = single.reshape(b, g, r, g, r, d).mean(dim=(2, 4)).reshape(b, g * g, d)
        return self.mm_projector(pooled)

    def loss(self, batch):
        visual = self.visual(batch["single"], batch["multi"], batch["query_ids"], batch["query_last"])
        text = self.llm.model.embed_tokens(batch["text_ids"])
        b, lt, h = text.shape
        rows = torch.cat([text.reshape(b * lt, h), visual.reshape(-1, h)], 0)
        embeds = rows[batch["splice_index"]].reshape(b, -1, h)
        hidden = self.llm.model(inputs_embeds=embeds).last_hidden_state
        picked = hidden.reshape(-1, h)[batch["loss_positions"]]
        return F.cross_entropy(self.llm.lm_head(picked), batch["targets"])


def load_case(directory, dtype):
    with open(os.path.join(directory, "config.json")) as f:
        cfg = json.load(f)
    model = Vlm(cfg)
    model.load_checkpoint(os.path.join(directory, "model.safetensors"))
    model = model.to(dtype)
    raw = load_file(os.path.join(directory, "batch.safetensors"))
    batch = {k: (v.to(dtype) if v.is_floating_point() else v.long()) for k, v in raw.items()}
    return cfg, model, batch


def make_step(model, lr):
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)

    def step(batch):
        loss = model.loss(batch)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item(), norm.item()

    return step


def time_case(directory, steps, lr):
    cfg, model, batch = load_case(directory, torch.float32)
    step = make_step(model, lr)
    loss0, _ = step(batch)  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        step(batch)
    dt = (time.perf_counter() - t0) / steps
    return {
        "dir": directory,
        "llm_hidden_size": cfg["hidden_size"],
        "compressor": cfg["vlmscale_compressor"],
        "step0_loss": loss0,
        "step_s": dt,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def rms_norm_at_least_f32(self, hidden_states):
    """Qwen2RMSNorm.forward with the statistics in max(f32, input dtype): HF casts to float32, which in an
    f64 run would be a down-cast; our decoder keeps f64 there (f32 runs are unaffected)."""
    input_dtype = hidden_states.dtype
    work = torch.promote_types(input_dtype, torch.float32)
    hidden_states = hidden_states.to(work)
    variance = hidden_states.pow(2).mean(-1, keepdim=True)
    hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
    return self.weight * hidden_states.to(input_dtype)


def check_case(directory, steps, lr):
    from transformers.models.qwen2 import modeling_qwen2

    modeling_qwen2.Qwen2RMSNorm.forward = rms_norm_at_least_f32
    out = {"torch": torch.__version__, "lr": lr, "steps": steps, "max_grad_norm": 1.0}
    for name, dtype in (("f64", torch.float64), ("f32", torch.float32)):
        _, model, batch = load_case(directory, dtype)
        step = make_step(model, lr)
        losses, norms = [], []
        for _ in range(steps + 1):
            loss, norm = step(batch)
            losses.append(loss)
            norms.append(norm)
        out[name] = {"losses": losses, "grad_norms": norms}
    with open(os.path.join(directory, "expected.json"), "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps(out))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["time", "check"])
    ap.add_argument("dirs", nargs="+")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lr", type=float, default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.mode == "check":
        torch.manual_seed(0)
        check_case(a.dirs[0], a.steps, 1e-3 if a.lr is None else a.lr)
        return
    for d in a.dirs:
        print(json.dumps(time_case(d, a.steps, 1e-4 if a.lr is None else a.lr)), flush=True)


if __name__ == "__main__":
    sys.exit(main())
