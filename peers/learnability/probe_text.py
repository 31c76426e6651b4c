"""Text-binding probe: can a small Qwen2 learn to read a Sort-of-CLEVR scene from its caption?

Trains transformers' Qwen2ForCausalLM (word-level tokens, tied embeddings, answer-only loss, AdamW,
3 % warm-up + cosine, clip 1.0, one thread) on documents of the generated world written as text, as
`vlmscale train llm` does (crates/train/src/llm_pretrain.rs), and prints held-out greedy accuracy per
question family. It re-implements the world in a few lines (6 objects of distinct colours, circle or
rectangle, on an 8x8 cell grid; left <=> column < 4, top <=> row < 4) so that a plateau can be told
apart from a trainer bug: it shares no code with the Rust trainer.

Flags (see --help): model shape (--hidden/--layers/--heads/--kv), --lr, --init, --steps, --ramp N
(curriculum: 1 -> 6 objects over the first N steps), --turns, --families, --qform natural|short,
--fmt plain|grid (caption as an 8x8 grid of one word per cell), --lm_all (loss on every token),
--order fixed|shuffled, --induct F (fraction of key-value recall documents).
Results: docs/training-notes.md.
Requires: torch, transformers.  Example:
    python3 peers/learnability/probe_text.py --hidden 64 --heads 4 --kv 2 --lr 1e-3 --ramp 3000 --steps 10000
"""
import argparse, math, random, time, json, sys
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM
p = argparse.ArgumentParser()
p.add_argument('--hidden', type=int, default=32); p.add_argument('--layers', type=int, default=2)
p.add_argument('--heads', type=int, default=2); p.add_argument('--kv', type=int, default=1)
p.add_argument('--steps', type=int, default=3000); p.add_argument('--batch', type=int, default=16)
p.add_argument('--lr', type=float, default=2e-3); p.add_argument('--init', type=float, default=0.125)
p.add_argument('--order', default='fixed')  # fixed | shuffled
p.add_argument('--qform', default='natural')  # natural | short
p.add_argument('--families', default='shape,left,top,count')
p.add_argument('--turns', type=int, default=1)
p.add_argument('--induct', type=float, default=0.0)  # fraction of batch that are induction docs
p.add_argument('--fmt', default='plain')  # plain | colonsep
p.add_argument('--seed', type=int, default=0); p.add_argument('--wd', type=float, default=0.0)
p.add_argument('--ramp', type=int, default=0)  # steps over which #objects ramps 1->6
p.add_argument('--lm_all', type=int, default=0)
p.add_argument('--eval_every', type=int, default=500)
a = p.parse_args()
torch.manual_seed(a.seed); torch.set_num_threads(1)
COL = ['red','green','blue','orange','gray','yellow']; SH = ['circle','rectangle']
words = set(COL+SH+'at row column , . what is the shape of object ? left side image on top how many objects have same as yes no system you are a helpful assistant user <s> <u> <a> <e> \n'.split(' '))
words |= {f'{c}-{s}' for c in COL for s in SH} | {'_'}
words |= {str(i) for i in range(10)} | {'\n', '<s>', '<u>', '<a>', '<e>'}
words |= {f'k{i}' for i in range(40)} | {'count','shape','left','top','closest','furthest','to'}
V = sorted(words); tok = {w:i for i,w in enumerate(V)}
FAM = a.families.split(',')
NOBJ = [6]
def scene(r):
    n = NOBJ[0]; cols = sorted(r.sample(range(6), n)) if n < 6 else list(range(6))
    cells = r.sample(range(64), n)
    return [(COL[i], r.choice(SH), cells[j]//8, cells[j]%8) for j,i in enumerate(cols)]
def caption(sc, r):
    objs = list(sc)
    if a.order == 'shuffled': r.shuffle(objs)
    if a.fmt == 'grid':
        g = ['_'] * 64
        for (c,s,row,col) in objs: g[row*8+col] = f'{c}-{s}'
        return g
    out = []
    for j,(c,s,row,col) in enumerate(objs):
        if a.fmt == 'colonsep': out += [c, s, row_t(row), col_t(col)]
        else: out += [c, s, 'at', 'row', str(row), 'column', str(col)]
        out.append(',' if j < len(objs)-1 else '.')
    return out
def row_t(x): return str(x)
def col_t(x): return str(x)
def qa(sc, fam, c):
    o = [x for x in sc if x[0] == c][0]
    if len(sc) == 1 and fam in ('closest','furthest'): fam = 'shape'
    if fam == 'shape': q = f'what is the shape of the {c} object ?'; ans = o[1]
    elif fam == 'left': q = f'is the {c} object on the left side of the image ?'; ans = 'yes' if o[3] < 4 else 'no'
    elif fam == 'top': q = f'is the {c} object on the top side of the image ?'; ans = 'yes' if o[2] < 4 else 'no'
    elif fam in ('closest', 'furthest'):
        d = [((x[2]-o[2])**2 + (x[3]-o[3])**2, x[1]) for x in sc if x[0] != c]
        d.sort(); ans = d[0][1] if fam == 'closest' else d[-1][1]
        q = f'what is the shape of the object {fam} to the {c} object ?'
    elif fam == 'count': q = f'how many objects have the same shape as the {c} object ?'; ans = str(sum(1 for x in sc if x[1] == o[1]))
    if a.qform == 'short': q = f'{fam} {c}'
    return q.split(' '), ans
SYS = ['<s>','you','are','a','helpful','assistant','<e>','\n']
def doc(r):
    sc = scene(r); ids=[]; mask=[]; info=[]
    def add(ws, m):
        for w in ws: ids.append(tok[w]); mask.append(m)
    add(SYS, 0); add(['<u>'] + caption(sc, r) + ['\n'], 0)
    fams = r.sample(FAM, len(FAM)) if a.turns == len(FAM) else None
    for t in range(a.turns):
        fam = fams[t] if fams else r.choice(FAM); c = r.choice([o[0] for o in sc]); q, ans = qa(sc, fam, c)
        if t > 0: add(['<u>'], 0)
        add(q + ['<e>', '\n', '<a>'], 0); info.append((len(ids), fam, tok[ans])); add([ans], 1); add(['<e>','\n'], 0)
    return ids, mask, info
def induct_doc(r):
    n = r.randint(4, 8); keys = r.sample(range(40), n); vals = [r.randrange(10) for _ in keys]
    ids=[]; mask=[]
    for k,v in zip(keys, vals): ids += [tok[f'k{k}'], tok[str(v)]]; mask += [0,0]
    for _ in range(4):
        i = r.randrange(n); ids += [tok[f'k{keys[i]}'], tok[str(vals[i])]]; mask += [0,1]
    return ids, mask, []
cfg = Qwen2Config(vocab_size=len(V), hidden_size=a.hidden, intermediate_size=2*a.hidden, num_hidden_layers=a.layers,
    num_attention_heads=a.heads, num_key_value_heads=a.kv, max_position_embeddings=512, rope_theta=1e6,
    tie_word_embeddings=True, initializer_range=a.init, rms_norm_eps=1e-6)
m = Qwen2ForCausalLM(cfg); nparam = sum(p.numel() for p in m.parameters())
opt = torch.optim.AdamW(m.parameters(), lr=a.lr, weight_decay=a.wd, betas=(0.9,0.999))
warm = max(1, int(0.03*a.steps))
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (s+1)/warm if s < warm else 0.5*(1+math.cos(math.pi*(s-warm)/max(1,a.steps-warm))))
rng = random.Random(a.seed)
def batchify(docs):
    L = max(len(d[0]) for d in docs)
    x = torch.zeros(len(docs), L, dtype=torch.long); y = torch.full((len(docs), L), -100, dtype=torch.long)
    for i,(ids,mask,_) in enumerate(docs):
        x[i,:len(ids)] = torch.tensor(ids)
        for j in range(1, len(ids)):
            if mask[j] or a.lm_all: y[i, j] = ids[j]
    return x, y
erng = random.Random(12345); evald = [doc(erng) for _ in range(300)]
def evaluate():
    m.eval(); saved = NOBJ[0]; acc = {}; tot = {}
    with torch.no_grad():
        for k in range(0, len(evald), 50):
            ch = evald[k:k+50]; x,_ = batchify(ch); lg = m(input_ids=x).logits
            for i,(ids,mask,info) in enumerate(ch):
                for pos,fam,ans in info:
                    acc[fam] = acc.get(fam,0) + int(lg[i,pos-1].argmax().item() == ans); tot[fam] = tot.get(fam,0)+1
    m.train(); return {f: round(acc[f]/tot[f],3) for f in tot}
t0 = time.time(); ema = None
for step in range(1, a.steps+1):
    NOBJ[0] = 6 if a.ramp == 0 else min(6, 1 + (5*step)//a.ramp)
    docs = [induct_doc(rng) if rng.random() < a.induct else doc(rng) for _ in range(a.batch)]
    x, y = batchify(docs)
    out = m(input_ids=x, labels=y); loss = out.loss
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0); opt.step(); sched.step()
    ema = loss.item() if ema is None else 0.98*ema + 0.02*loss.item()
    if step % a.eval_every == 0 or step == a.steps:
        print(f'step {step} loss {ema:.3f} acc {evaluate()} {time.time()-t0:.0f}s', flush=True)
print('params', nparam, 'args', vars(a))
