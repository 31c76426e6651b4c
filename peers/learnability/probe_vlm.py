"""Learnability probe for the VLM-training plateau (diagnostic; not used by the Rust code or tests).

Trains, in PyTorch, the same kind of model as `vlmscale train vlm` (a Qwen2-architecture LLM from
scratch, `transformers.Qwen2ForCausalLM`, reading V visual embeddings spliced into a ChatML prompt
through an mlp2x_gelu projector; answer tokens as the only targets; AdamW, warm-up + cosine, clip 1.0)
with a choice of visual features, to tell a bug in our candle pipeline from a learning-dynamics limit:

  --feat pixels   raw 10x10 patch pixels (no position information)
  --feat oracle   per patch: one-hot (colour, shape) of the object centred there + one-hot row/column
  --feat K        hidden state K of a pretrained tower (TOWER_DIR, HF CLIP layout)
  INJECT=1        QueCC-like query injection: the mean question embedding added before the projector GELU
  NOSYS=1         drop the ChatML system prompt
  TEXTSCENE=1     also write the scene's caption as text in the prompt (a purely symbolic task)
  --captions R    add R caption examples per image ("What is in the image?" -> "red circle at row ...")
  INIT=S          std of the LLM's normal weight init (HF initializer_range; default 0.02)
  CURR=1          (oracle only) each non-relational training question sees 1-6 objects: the queried one
                  plus random others (CURRN=n fixes the count)
  SHORTQ=1        no template: the prompt is the visual tokens then "<family word> <colour>"
  QFIRST=1        the question before the visual tokens (LLaVA also puts <image> after the question)
  PLAINQ=1        no template: the visual tokens then the natural question
  MIXQ=1          every training question twice: as asked and in the SHORTQ form (held-out: as asked)
  STAGEQ=n        curriculum: the first n steps train on the SHORTQ form only, then on questions as asked

Data: `vlmscale data make --images 4000 --out $TRAIN_DIR` and
`vlmscale data make --images 300 --start 1000000 --out $HELDOUT_DIR`.
Usage: TRAIN_DIR=... HELDOUT_DIR=... python3 probe_vlm.py --feat oracle --V 64 --steps 2000
"""
import os, json, sys, time, math, torch, numpy as np, argparse
from PIL import Image
from tokenizers import Tokenizer
from transformers import Qwen2Config, Qwen2ForCausalLM, CLIPVisionModel
torch.set_num_threads(1); torch.manual_seed(0)
ap = argparse.ArgumentParser()
ap.add_argument('--feat', default='pixels'); ap.add_argument('--V', type=int, default=16)
ap.add_argument('--H', type=int, default=64); ap.add_argument('--L', type=int, default=2)
ap.add_argument('--lr', type=float, default=2e-3); ap.add_argument('--steps', type=int, default=1000)
ap.add_argument('--bs', type=int, default=32); ap.add_argument('--captions', type=int, default=0)
ap.add_argument('--images', type=int, default=4000)
a = ap.parse_args()
tok = Tokenizer.from_file(os.environ['TRAIN_DIR'] + '/tokenizer.json')
def load(d, n):
    recs = [json.loads(l) for l in open(f'{d}/sort_of_clevr_s0.jsonl')]
    imgs = {}
    for r in recs:
        if r['image'] not in imgs and len(imgs) < n: imgs[r['image']] = len(imgs)
    recs = [r for r in recs if r['image'] in imgs]
    px = np.zeros((len(imgs), 80, 80, 3), np.float32)
    for p, i in imgs.items(): px[i] = np.asarray(Image.open(f'{d}/{p}').convert('RGB'), np.float32) / 255
    return recs, imgs, px
tr, tri, trpx = load(os.environ['TRAIN_DIR'], a.images); te, tei, tepx = load(os.environ['HELDOUT_DIR'], 300)
mean = np.array([0.48145466,0.4578275,0.40821073],np.float32); std=np.array([0.26862954,0.26130258,0.27577711],np.float32)
COLS = [(255,0,0),(0,255,0),(0,0,255),(255,156,0),(128,128,128),(255,255,0)]
def feats(px):
    if a.feat == 'oracle':
        out = np.zeros((len(px), 64, 29), np.float32)
        out[:, :, 0] = 1
        for p in range(64): out[:, p, 13 + p // 8] = 1; out[:, p, 21 + p % 8] = 1
        im = (px*255).round().astype(int)
        for n in range(len(px)):
            for ci, c in enumerate(COLS):
                m = np.all(im[n] == np.array(c), axis=-1); ys, xs = np.nonzero(m)
                if len(ys) == 0: continue
                sh = 1 if m.sum() > 100 else 0
                p = (int(ys.mean())*8//80)*8 + int(xs.mean())*8//80
                out[n, p, 0] = 0; out[n, p, 1 + ci*2 + sh] = 1
        return torch.tensor(out)
    if a.feat == 'pixels':
        x = torch.tensor(px).reshape(-1, 8, 10, 8, 10, 3).permute(0,1,3,2,4,5).reshape(-1, 64, 300)
        return (x - 0.5) * 2
    m = CLIPVisionModel.from_pretrained(os.environ.get('TOWER_DIR', '')).eval()
    x = torch.tensor(((px - mean)/std).transpose(0,3,1,2))
    with torch.no_grad(): hs = m(pixel_values=x, output_hidden_states=True).hidden_states
    return hs[int(a.feat)][:, 1:, :]
F_tr, F_te = feats(trpx), feats(tepx)
d = F_tr.shape[-1]
def enc(t): return tok.encode(t, add_special_tokens=False).ids
import os
SYS = "<|im_start|>user\n" if os.environ.get("NOSYS") else "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
COL = {'red':(255,0,0),'green':(0,255,0),'blue':(0,0,255),'orange':(255,156,0),'grey':(128,128,128),'yellow':(255,255,0)}
def example(r, short=False):
    q = r['conversations'][0]['value'].replace('<image>\n', ''); ans = r['conversations'][1]['value']
    pre = enc(SYS); suf = enc("\n" + q + "<|im_end|>\n<|im_start|>assistant\n"); an = enc(ans) + enc("<|im_end|>")
    if os.environ.get('QFIRST'):
        pre = enc(SYS + q + "\n"); suf = enc("<|im_end|>\n<|im_start|>assistant\n")
    if os.environ.get('PLAINQ'):
        pre = []; suf = enc(" " + q.replace("\n", " "))
    if os.environ.get('SHORTQ') or short:
        c = [k for k in COL if k in q][0]
        pre = []; suf = enc(" " + {'count':'many'}.get(r['family'], r['family']) + " " + c)
    return pre, suf, an
def caption(px):
    im = (px*255).round().astype(int); parts = []
    for name, c in COL.items():
        m = np.all(im == np.array(c), axis=-1); ys, xs = np.nonzero(m)
        if len(ys) == 0: continue
        shape = 'rectangle' if m.sum() > 100 else 'circle'
        parts.append(f"{name} {shape} at row {int(ys.mean())*8//80} column {int(xs.mean())*8//80}")
    return ', '.join(parts) + '.'
ex_tr = [(tri[r['image']],) + example(r) + (r['family'],) for r in tr]
ex_short = [(tri[r['image']],) + example(r, True) + (r['family'],) for r in tr]
STAGE = int(os.environ.get('STAGEQ', 0))
if os.environ.get('MIXQ'):
    ex_tr = ex_tr + [(tri[r['image']],) + example(r, True) + (r['family'],) for r in tr]
    print('MIXQ: natural + short questions, held-out on natural', flush=True)
if os.environ.get('TEXTSCENE'):
    def withcap(exs, PX):
        out = []
        for (i, pre, suf, an, fam) in exs:
            out.append((i, pre + enc(caption(PX[i])), suf, an, fam))
        return out
    ex_tr = withcap(ex_tr, trpx)
    print(tok.decode(ex_tr[0][1]), flush=True)
if a.captions:
    caps = []
    for i in range(len(trpx)):
        pre = enc(SYS); suf = enc("\nWhat is in the image?<|im_end|>\n<|im_start|>assistant\n"); an = enc(caption(trpx[i])) + enc("<|im_end|>")
        caps.append((i, pre, suf, an, 'caption'))
    print(tok.decode(caps[0][3]), flush=True)
    ex_tr = ex_tr + caps * a.captions
ex_te = [(tei[r['image']],) + example(r) + (r['family'],) for r in te]
if os.environ.get('TEXTSCENE'): ex_te = withcap(ex_te, tepx)
print('vocab', tok.get_vocab_size(), 'ex', len(ex_tr), 'feat', tuple(F_tr.shape), flush=True)
cfg = Qwen2Config(vocab_size=tok.get_vocab_size(), hidden_size=a.H, intermediate_size=2*a.H, num_hidden_layers=a.L,
                  num_attention_heads=a.H//16, num_key_value_heads=max(1, a.H//32), max_position_embeddings=256, tie_word_embeddings=True, initializer_range=float(os.environ.get('INIT','0.02')))
llm = Qwen2ForCausalLM(cfg)
g = int(math.isqrt(a.V))
proj = torch.nn.Sequential(torch.nn.Linear(d, a.H), torch.nn.GELU(), torch.nn.Linear(a.H, a.H))
ap2 = os.environ.get('INJECT')
qproj = torch.nn.Linear(a.H, a.H)
def visual(f, qe=None):
    b = f.shape[0]; x = f.reshape(b, 8, 8, d).permute(0,3,1,2)
    x = torch.nn.functional.avg_pool2d(x, 8//g).permute(0,2,3,1).reshape(b, a.V, d)
    if ap2 and qe is not None:
        return proj[2](proj[1](proj[0](x) + qproj(qe)[:, None, :]))
    return proj(x)
params = list(llm.parameters()) + list(proj.parameters()) + list(qproj.parameters())
opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.0)
def batch(exs, F):
    E = llm.get_input_embeddings()
    qe = torch.stack([E(torch.tensor(e[2])).mean(0) for e in exs])
    Fb = F[[e[0] for e in exs]].clone()
    if os.environ.get('CURR') and F is F_tr:
        for i, e in enumerate(exs):
            if e[4] not in ('shape', 'left', 'top'): continue
            q = tok.decode(e[2]); qc = [k for k, c in enumerate(COL) if c in q][0]
            n = int(os.environ.get("CURRN", 0)) or int(rng.integers(1, 7)); others = [k for k in range(6) if k != qc]; rng.shuffle(others)
            for k in others[:6 - n]:
                m = (Fb[i, :, 1 + 2*k] + Fb[i, :, 2 + 2*k]) > 0
                Fb[i, m, 1 + 2*k] = 0; Fb[i, m, 2 + 2*k] = 0; Fb[i, m, 0] = 1
    vis = visual(Fb, qe)
    L = max(len(e[1]) + a.V + len(e[2]) + len(e[3]) for e in exs)
    emb = torch.zeros(len(exs), L, a.H); labels = torch.full((len(exs), L), -100)
    E = llm.get_input_embeddings()
    for i, (img, pre, suf, an, fam) in enumerate(exs):
        t = E(torch.tensor(pre + suf + an)); p = len(pre)
        row = torch.cat([t[:p], vis[i], t[p:]]); emb[i, :row.shape[0]] = row
        s = p + a.V + len(suf); labels[i, s:s+len(an)] = torch.tensor(an)
    return emb, labels
rng = np.random.default_rng(0)
t0 = time.time()
for step in range(a.steps):
    lr = a.lr * min(1, (step+1)/ (0.03*a.steps)) * 0.5 * (1 + math.cos(math.pi * step / a.steps))
    for gp in opt.param_groups: gp['lr'] = lr
    pool = ex_short if step < STAGE else ex_tr
    idx = rng.integers(0, len(pool), a.bs)
    emb, labels = batch([pool[i] for i in idx], F_tr)
    out = llm(inputs_embeds=emb, labels=labels)
    opt.zero_grad(); out.loss.backward(); torch.nn.utils.clip_grad_norm_(params, 1.0); opt.step()
    if step % 100 == 0 or step == a.steps - 1:
        with torch.no_grad():
            acc = {}
            for k in range(0, len(ex_te), 200):
                exs = ex_te[k:k+200]
                emb, labels = batch(exs, F_te)
                lg = llm(inputs_embeds=emb).logits
                for i, e in enumerate(exs):
                    s = len(e[1]) + a.V + len(e[2])
                    acc.setdefault(e[4], []).append(int(lg[i, s-1].argmax()) == e[3][0])
        print(step, f'loss {out.loss.item():.4f}', {k: round(float(np.mean(v)),2) for k, v in acc.items()}, f'{time.time()-t0:.0f}s', flush=True)
