# Diagnostic: is a patch's absolute position (row, column) linearly decodable from a frozen tower's
# features, layer by layer? Numpy CLIP forward (HF CLIPVisionModel semantics, the 80x80 / patch-10 / d-64 /
# 4-block tower of `vlmscale train vision`), ridge regression on half the patches, accuracy on the rest.
# Usage: python3 pos_probe.py TOWER_DIR DATA.jsonl   (DATA from `vlmscale data make`; needs numpy, pillow, safetensors)
import json, sys, numpy as np
from PIL import Image
from safetensors.numpy import load_file
d = sys.argv[1]; data = sys.argv[2]
w = load_file(d + '/model.safetensors'); P = 'vision_model.'
MEAN = np.array([0.48145466, 0.4578275, 0.40821073]); STD = np.array([0.26862954, 0.26130258, 0.27577711])
def ln(x, p): m = x.mean(-1, keepdims=True); v = ((x - m) ** 2).mean(-1, keepdims=True); return (x - m) / np.sqrt(v + 1e-5) * w[p + '.weight'] + w[p + '.bias']
def lin(x, p): return x @ w[p + '.weight'].T + w[p + '.bias']
def fwd(px):  # px (B, 80, 80, 3) in [0,1]
    x = (px - MEAN) / STD; B = x.shape[0]
    pe = w[P + 'embeddings.patch_embedding.weight']  # (64, 3, 10, 10)
    patches = x.reshape(B, 8, 10, 8, 10, 3).transpose(0, 1, 3, 5, 2, 4).reshape(B, 64, 300)
    t = patches @ pe.reshape(64, 300).T
    cls = np.broadcast_to(w[P + 'embeddings.class_embedding'], (B, 1, 64))
    h = np.concatenate([cls, t], 1) + w[P + 'embeddings.position_embedding.weight']
    h = ln(h, P + 'pre_layrnorm'); hs = [h]
    for l in range(4):
        q = P + f'encoder.layers.{l}.'
        a = ln(h, q + 'layer_norm1')
        Q, K, V = [lin(a, q + f'self_attn.{n}_proj').reshape(B, 65, 4, 16).transpose(0, 2, 1, 3) for n in 'qkv']
        s = Q @ K.transpose(0, 1, 3, 2) / 4.0; s = np.exp(s - s.max(-1, keepdims=True)); s /= s.sum(-1, keepdims=True)
        o = (s @ V).transpose(0, 2, 1, 3).reshape(B, 65, 64)
        h = h + lin(o, q + 'self_attn.out_proj')
        m = lin(ln(h, q + 'layer_norm2'), q + 'mlp.fc1'); m = m * (1 / (1 + np.exp(-1.702 * m)))
        h = h + lin(m, q + 'mlp.fc2'); hs.append(h)
    return hs
import os
recs = [json.loads(l) for l in open(data)]
imgs = sorted({r['image'] for r in recs})[:300]
px = np.stack([np.asarray(Image.open(os.path.join(os.path.dirname(data), i)).convert('RGB'), dtype=np.float64) / 255 for i in imgs])
hs = fwd(px)
rows = np.repeat(np.arange(8), 8); cols = np.tile(np.arange(8), 8)
for li, h in enumerate(hs):
    f = h[:, 1:, :]  # (B, 64, 64)
    X = f.reshape(-1, 64); X = (X - X.mean(0)) / (X.std(0) + 1e-12); X = np.concatenate([X, np.ones((len(X), 1))], 1)
    yr = np.tile(rows, len(imgs)); yc = np.tile(cols, len(imgs))
    n = len(X) // 2
    res = []
    for y in (yr, yc):
        A = X[:n]; wt = np.linalg.solve(A.T @ A + 1e-6 * np.eye(65), A.T @ y[:n])
        pred = X[n:] @ wt; res.append(np.mean(np.round(pred).clip(0, 7) == y[n:]))
        res.append(np.mean((pred < 3.5) == (y[n:] < 3.5)))
    print(f'layer {li}: row exact {res[0]:.3f} top-half {res[1]:.3f} | col exact {res[2]:.3f} left-half {res[3]:.3f}')
