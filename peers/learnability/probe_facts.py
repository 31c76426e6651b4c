"""Knowledge probe: does a small Qwen2 memorise more facts of the generated world the larger it is?

The world's objects (6 colours x circle/rectangle) each have P numbered properties whose values are
digits, drawn once from a fixed seed (the world's "encyclopedia"). A document is one object's
caption and a question about one of its properties:

    red circle at row 2 column 5 . what is number 4 7 of the object ? -> 3

Trains transformers' Qwen2ForCausalLM (word-level tokens, tied embeddings, answer-only loss, AdamW,
3 % warm-up + cosine, clip 1.0, init std 0.125, one thread) at the `vlmscale train llm` size
presets (crates/train/src/sizes.rs) and prints held-out accuracy over every fact (new positions, each
fact asked once). Shares no code with the Rust trainer.

    python3 peers/learnability/probe_facts.py --size s --props 200 --steps 5000
Results: docs/training-notes.md.
"""
import argparse, math, random, time, json
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

SIZES = {  # hidden, intermediate, layers, heads, kv heads (crates/train/src/sizes.rs)
    'xs': (32, 64, 2, 2, 1), 's': (64, 128, 2, 4, 2), 'm': (96, 256, 4, 6, 2), 'l': (128, 384, 6, 8, 4)}
p = argparse.ArgumentParser()
p.add_argument('--size', default='s'); p.add_argument('--props', type=int, default=200)
p.add_argument('--values', type=int, default=10)
p.add_argument('--steps', type=int, default=5000); p.add_argument('--batch', type=int, default=16)
p.add_argument('--lr', type=float, default=1e-3); p.add_argument('--init', type=float, default=0.125)
p.add_argument('--seed', type=int, default=0); p.add_argument('--world', type=int, default=1234)
p.add_argument('--zipf', type=float, default=0.0)  # property frequency ~ 1/(k+1)^zipf in training
p.add_argument('--eval_every', type=int, default=1000)
a = p.parse_args()
torch.manual_seed(a.seed); torch.set_num_threads(1)
COL = ['red', 'green', 'blue', 'orange', 'grey', 'yellow']; SH = ['circle', 'rectangle']
words = COL + SH + 'at row column . what is number of the object ? <s> <u> <a> <e> <pad>'.split(' ')
words += [str(i) for i in range(10)]
V = sorted(set(words)); tok = {w: i for i, w in enumerate(V)}
W = random.Random(a.world)
TABLE = {(c, s, k): W.randrange(a.values) for c in COL for s in SH for k in range(a.props)}
PW = [1.0 / (k + 1) ** a.zipf for k in range(a.props)]

def digits(n):
    return list(str(n))

def doc(c, s, k, r):
    row, col = r.randrange(8), r.randrange(8)
    ids = ['<u>', c, s, 'at', 'row', str(row), 'column', str(col), '.', 'what', 'is', 'number'] + digits(k) + \
          ['of', 'the', 'object', '?', '<e>', '<a>']
    return [tok[w] for w in ids], tok[str(TABLE[(c, s, k)])]

def batch(r):
    xs, ys = [], []
    for _ in range(a.batch):
        k = r.choices(range(a.props), PW)[0]
        x, y = doc(r.choice(COL), r.choice(SH), k, r)
        xs.append(x + [y, tok['<e>']]); ys.append(len(x))
    L = max(len(x) for x in xs)
    ids = torch.full((len(xs), L), tok['<pad>']); lab = torch.full((len(xs), L), -100)
    for i, x in enumerate(xs):
        ids[i, :len(x)] = torch.tensor(x)
        lab[i, ys[i]] = x[ys[i]]; lab[i, ys[i] + 1] = x[ys[i] + 1]
    return ids, lab

h, inter, layers, heads, kv = SIZES[a.size]
cfg = Qwen2Config(vocab_size=len(V), hidden_size=h, intermediate_size=inter, num_hidden_layers=layers,
                  num_attention_heads=heads, num_key_value_heads=kv, max_position_embeddings=64,
                  tie_word_embeddings=True, initializer_range=a.init, rope_theta=1e6, rms_norm_eps=1e-6)
model = Qwen2ForCausalLM(cfg)
nparam = sum(q.numel() for q in model.parameters())
opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.0, betas=(0.9, 0.999))
warm = max(1, int(0.03 * a.steps))
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (s + 1) / warm if s < warm else
                                          0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, a.steps - warm))))
r = random.Random(a.seed + 17)

def evaluate():
    model.eval(); er = random.Random(99); ok = 0; n = 0
    items = [(c, s, k) for c in COL for s in SH for k in range(a.props)]
    with torch.no_grad():
        for i in range(0, len(items), 256):
            chunk = items[i:i + 256]
            xs = [doc(c, s, k, er) for c, s, k in chunk]
            L = max(len(x) for x, _ in xs)
            ids = torch.full((len(xs), L), tok['<pad>']); att = torch.zeros((len(xs), L), dtype=torch.long)
            for j, (x, _) in enumerate(xs):  # left-pad so the answer position is the last
                ids[j, L - len(x):] = torch.tensor(x); att[j, L - len(x):] = 1
            pos = (att.cumsum(-1) - 1).clamp(min=0)
            logits = model(input_ids=ids, attention_mask=att, position_ids=pos).logits[:, -1]
            pred = logits.argmax(-1)
            ok += sum(int(pred[j]) == y for j, (_, y) in enumerate(xs)); n += len(xs)
    model.train(); return ok / n

t0 = time.time()
for step in range(1, a.steps + 1):
    ids, lab = batch(r)
    loss = model(input_ids=ids, labels=lab).loss
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step(); sched.step()
    if step % a.eval_every == 0 or step == a.steps:
        print(json.dumps({'size': a.size, 'params': nparam, 'facts': len(TABLE), 'step': step, 'loss': round(loss.item(), 4),
                          'acc': round(evaluate(), 4), 's': round(time.time() - t0, 1)}), flush=True)
