#!/usr/bin/env python3
"""PyTorch counterpart of `vlmscale bench vision` / examples/bench_vision.rs: HF `CLIPVisionModel` with the
openai/clip-vit-large-patch14-336 vision config and random weights, one 336x336 image, 2 threads, f32,
output_hidden_states=True (as LLaVA runs it). Prints best and mean seconds and GFLOP/s (same FLOP count as
vlm::bench_vision::tower_gflop).

    python3 peers/bench_vision_torch.py [repeats] [float32|bfloat16]
"""
import sys
import time

import torch
from transformers import CLIPVisionConfig, CLIPVisionModel

torch.set_num_threads(2)
repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 2
dtype = getattr(torch, sys.argv[2]) if len(sys.argv) > 2 else torch.float32
cfg = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                       image_size=336, patch_size=14, hidden_act="quick_gelu", projection_dim=768)
torch.manual_seed(0)
model = CLIPVisionModel(cfg).eval().to(dtype)
pixels = torch.randn(1, 3, 336, 336, dtype=dtype)
d, i, n = 1024, 4096, 576
t = n + 1
gflop = (2 * n * d * 3 * 14 * 14 + 24 * (8 * t * d * d + 4 * t * t * d + 4 * t * d * i)) / 1e9
with torch.inference_mode():
    model(pixel_values=pixels, output_hidden_states=True)
    times = []
    for _ in range(repeats):
        s = time.perf_counter()
        model(pixel_values=pixels, output_hidden_states=True)
        times.append(time.perf_counter() - s)
best = min(times)
print(f"PyTorch {torch.__version__} CLIPVisionModel {str(dtype).removeprefix('torch.')}, 24 blocks: best {best:.3f} s  mean {sum(times) / len(times):.3f} s"
      f"  {gflop:.2f} GFLOP  {gflop / best:.1f} GFLOP/s")
