"""Upper-bound probe: an MLP on oracle object features (per colour: is-square, x, y) plus a one-hot
question (colour, family) -> answer. Shows the generated questions are learnable from the image content
and how many steps even a model with no binding problem needs. Diagnostic only.
Usage: TRAIN_DIR=... HELDOUT_DIR=... python3 probe_mlp.py
"""
import os
import json, numpy as np, torch
from PIL import Image
torch.set_num_threads(1); torch.manual_seed(0)
COLS = [(255,0,0),(0,255,0),(0,0,255),(255,156,0),(128,128,128),(255,255,0)]
NAMES = ['red','green','blue','orange','grey','yellow']
FAMS = ['shape','left','top','closest','furthest','count']
ANS = ['yes','no','rectangle','circle','1','2','3','4','5','6']
def load(d):
    recs = [json.loads(l) for l in open(f'{d}/sort_of_clevr_s0.jsonl')]
    cache = {}; X = []; Y = []; F = []
    for r in recs:
        p = r['image']
        if p not in cache:
            im = np.asarray(Image.open(f'{d}/{p}').convert('RGB')).astype(int)
            f = np.zeros(6*3)
            for ci, c in enumerate(COLS):
                m = np.all(im == np.array(c), axis=-1); ys, xs = np.nonzero(m)
                f[ci*3:(ci+1)*3] = [m.sum() > 100, xs.mean()/80, ys.mean()/80]
            cache[p] = f
        q = r['conversations'][0]['value']
        col = [n for n in NAMES if f' {n} ' in q][0]; fam = r['family']
        qv = np.zeros(12); qv[NAMES.index(col)] = 1; qv[6 + FAMS.index(fam)] = 1
        X.append(np.concatenate([cache[p], qv])); Y.append(ANS.index(r['conversations'][1]['value'])); F.append(fam)
    return torch.tensor(np.array(X), dtype=torch.float32), torch.tensor(Y), F
Xtr, Ytr, _ = load(os.environ['TRAIN_DIR']); Xte, Yte, Fte = load(os.environ['HELDOUT_DIR'])
m = torch.nn.Sequential(torch.nn.Linear(30, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
opt = torch.optim.Adam(m.parameters(), 1e-3)
for step in range(3001):
    i = torch.randint(0, len(Xtr), (64,)); loss = torch.nn.functional.cross_entropy(m(Xtr[i]), Ytr[i])
    opt.zero_grad(); loss.backward(); opt.step()
    if step % 1000 == 0:
        pred = m(Xte).argmax(-1)
        print(step, loss.item(), {f: round(float(np.mean([(pred[k]==Yte[k]).item() for k in range(len(Fte)) if Fte[k]==f])),2) for f in FAMS}, flush=True)
