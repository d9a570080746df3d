"""Train the tiny shapes VLM (see model.py, shapes_data.py).

Command (from the repo root, Debian's python with torch 1.13 CPU):
  /usr/bin/python3 train/train.py --steps STEPS --out train/out
Seed: 1234 (torch, python random); data is a pure function of (split, index).
Needs a fast BLAS: Debian's torch ships BLAS_INFO=generic and the reference libblas gave
4 GFLOPS; `apt-get install -y libopenblas0-pthread` (switches the libblas alternative) -> ~60.

Recorded runs (2 cores, shared, ~1.45 s/step at batch 32):
  run 1: /usr/bin/python3 train/train.py --steps 550 --batch 32 --lr 3e-3 --n-eval 210 --eval-every 100000
         seed 1234, 17,600 train items, 775 s training + 80 s eval, final answer-token loss ~0.55.
         Held-out exact match (210 items, 30/type): shape .267 colour .233 count .500 position .100
         relation .333 yesno .667 describe .000 -- i.e. AT CHANCE: the decoder learned the answer
         priors/format, the vision path had not started to be used yet. Needs far more steps.
  run 2 (continuation): --init train/out/ckpt.pt --data-offset 17600 --steps 270 --lr 2e-3
         --n-eval 140 --out train/out/cont   (see train/out/cont/train_log.txt)

Tokenization is exact: question/answer strings are encoded with the REAL SmolVLM-256M-Instruct
tokenizer by transformers.js (train/tokenize.mjs, run through node) and cached in
OUT/tokens.json; the prompt is the real chat template with the processor's one-image <image>
expansion (64 image tokens), checked against whole-string tokenization.
"""
import argparse
import json
import math
import os
import random
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shapes_data as D  # noqa: E402
from model import Cfg, TinyVLM, END_OF_UTTERANCE_ID  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAD_ID = 2


def node_tokenize(strings, tmpdir):
    inp, outp = os.path.join(tmpdir, "tok_in.json"), os.path.join(tmpdir, "tok_out.json")
    with open(inp, "w") as f:
        json.dump({"strings": strings}, f)
    subprocess.run(["node", os.path.join(REPO, "train", "tokenize.mjs"), inp, outp], check=True, cwd=REPO)
    with open(outp) as f:
        return json.load(f)["ids"]


class Tok:
    """Cache of token ids for prompt pieces, questions and answers."""

    def __init__(self, out_dir, items):
        path = os.path.join(out_dir, "tokens.json")
        cache = json.load(open(path)) if os.path.exists(path) else {}
        need = ["<|im_start|>User:" + D.IMAGE_PROMPT, "<end_of_utterance>\nAssistant:"]
        for it in items:
            need.append(it["question"])
            need.append(D.answer_text(it["answer"]))
        missing = sorted(set(s for s in need if s not in cache))
        if missing:
            ids = node_tokenize(missing, out_dir)
            cache.update(dict(zip(missing, ids)))
            json.dump(cache, open(path, "w"))
        self.c = cache
        self.prefix = cache[need[0]]
        self.suffix = cache[need[1]]

    def prompt(self, q):
        return self.prefix + self.c[q] + self.suffix

    def answer(self, a):
        return self.c[D.answer_text(a)]


def verify_tokenization(tok, items, out_dir):
    strings = [D.chat_prompt(it["question"]) + D.answer_text(it["answer"]) for it in items]
    full = node_tokenize(strings, out_dir)
    for it, f in zip(items, full):
        assert tok.prompt(it["question"]) + tok.answer(it["answer"]) == f, (it["question"], it["answer"])
    print(f"tokenization check: {len(items)} whole-string encodings match the composed ids")


def pixels(img_u8):
    """uint8 HxWx3 -> normalized [3,H,W] float ((x/255 - 0.5)/0.5) as the Idefics3 processor."""
    return torch.from_numpy(img_u8).permute(2, 0, 1).float().div(255.0).sub(0.5).div(0.5)


def make_batch(tok, items):
    seqs, starts = [], []
    for it in items:
        p = tok.prompt(it["question"])
        a = tok.answer(it["answer"])
        seqs.append(p + a)
        starts.append(len(p))
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), PAD_ID, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
    # predict answer tokens: positions start-1 .. len-2 predict ids[start .. len-1]
    bi, pi, tgt = [], [], []
    for i, (s, st) in enumerate(zip(seqs, starts)):
        for p in range(st - 1, len(s) - 1):
            bi.append(i)
            pi.append(p)
            tgt.append(s[p + 1])
    px = torch.stack([pixels(D.render(it["scene"])) for it in items])
    return ids, px, torch.tensor(bi), torch.tensor(pi), torch.tensor(tgt)


def evaluate(model, tok, items, max_new=64, return_details=False):
    model.eval()
    per = {}
    details = []
    for it in items:
        px = pixels(D.render(it["scene"]))[None]
        out, first = model.generate(tok.prompt(it["question"]), px, max_new=max_new)
        ok = out == tok.answer(it["answer"])
        per.setdefault(it["qtype"], []).append(ok)
        if return_details:
            details.append(dict(out=out, first=first, ok=ok))
    model.train()
    acc = {k: sum(v) / len(v) for k, v in per.items()}
    return (acc, details) if return_details else acc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--n-train", type=int, default=200_000)
    ap.add_argument("--n-eval", type=int, default=350, help="held-out test items evaluated (type = index %% 7)")
    ap.add_argument("--eval-every", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(REPO, "train", "out"))
    ap.add_argument("--bench", action="store_true")
    ap.add_argument("--init", default=None, help="start from this checkpoint's weights (continuation run)")
    ap.add_argument("--data-offset", type=int, default=0, help="first train index (continuation runs use fresh items)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    random.seed(a.seed)
    os.makedirs(a.out, exist_ok=True)
    log = open(os.path.join(a.out, "train_log.txt"), "a")

    def P(*s):
        msg = " ".join(str(x) for x in s)
        print(msg, flush=True)
        log.write(msg + "\n")
        log.flush()

    t0 = time.time()
    n_items_needed = a.steps * a.batch
    train_idx = list(range(a.data_offset, a.data_offset + min(a.n_train, n_items_needed)))
    train_items = [D.get_item("train", i) for i in train_idx]
    test_items = [D.get_item("test", i) for i in range(max(a.n_eval, 300))]
    tok = Tok(a.out, train_items + test_items)
    verify_tokenization(tok, test_items[:70] + train_items[:70], a.out)
    P(f"data: {len(train_items)} train items, {len(test_items)} test items, prep {time.time() - t0:.1f}s")

    cfg = Cfg()
    model = TinyVLM(cfg)
    if a.init:
        model.load_state_dict(torch.load(a.init, map_location="cpu")["model"])
        P(f"initialized from {a.init}")
    nparam = sum(p.numel() for p in model.parameters())
    nvis = sum(p.numel() for p in model.model.vision_model.parameters())
    P(f"cfg {cfg.to_dict()}\nparams total {nparam} (vision {nvis}, embed {cfg.vocab * cfg.hidden})")
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.98), weight_decay=0.01)
    warm = min(200, a.steps // 10)

    def lr_at(s):
        if s < warm:
            return a.lr * (s + 1) / warm
        return a.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, a.steps - warm))))

    used = set()
    for v in tok.c.values():
        used.update(v)
    used_ids = torch.tensor(sorted(used))
    gen = torch.Generator().manual_seed(a.seed)
    P(f"{len(used_ids)} distinct token ids in the task data")
    order = list(range(len(train_items)))
    rng = random.Random(a.seed)
    rng.shuffle(order)
    P(f"command: {' '.join(sys.argv)}  seed {a.seed}  threads {a.threads}")
    t_train = time.time()
    ema = None
    for step in range(a.steps):
        lo = (step * a.batch) % len(order)
        batch = [train_items[order[(lo + j) % len(order)]] for j in range(a.batch)]
        ids, px, bi, pi, tgt = make_batch(tok, batch)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        h = model.hidden(ids, px)
        # sampled softmax: all tokens the task data ever uses + 1024 random negatives per step
        # (the full 49280-way head costs more than the rest of the model); eval uses the full vocab
        neg = torch.randint(0, cfg.vocab, (1024,), generator=gen)
        cand = torch.unique(torch.cat([used_ids, neg]))
        remap = torch.full((cfg.vocab,), -1, dtype=torch.long)
        remap[cand] = torch.arange(len(cand))
        W = model.model.text_model.embed_tokens.weight[cand]
        loss = F.cross_entropy(h[bi, pi] @ W.t(), remap[tgt])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        if step % 50 == 0 or step == a.steps - 1 or (a.bench and step % 5 == 0):
            el = time.time() - t_train
            P(f"step {step} loss {loss.item():.4f} ema {ema:.4f} lr {lr_at(step):.2e} {el:.0f}s ({el / (step + 1):.3f}s/step)")
        if a.bench and step == 20:
            return
        if (step + 1) % a.eval_every == 0 and step + 1 < a.steps:
            acc = evaluate(model, tok, test_items[:70])
            P(f"  quick eval (70 test items) {json.dumps({k: round(v, 2) for k, v in acc.items()})}")
            torch.save(dict(model=model.state_dict(), cfg=cfg.to_dict(), step=step + 1), os.path.join(a.out, "ckpt.pt"))
    train_s = time.time() - t_train
    torch.save(dict(model=model.state_dict(), cfg=cfg.to_dict(), step=a.steps, seed=a.seed), os.path.join(a.out, "ckpt.pt"))
    t1 = time.time()
    acc = evaluate(model, tok, test_items[: a.n_eval])
    P(f"training {train_s:.0f}s ({a.steps} steps x {a.batch}); eval {time.time() - t1:.0f}s")
    P(f"HELD-OUT exact-match accuracy on {a.n_eval} test items (greedy, per type):")
    for k in D.QTYPES:
        if k in acc:
            P(f"  {k:9s} {acc[k]:.3f}")
    P(f"  overall   {sum(acc.values()) / len(acc):.3f}")
    json.dump(dict(acc=acc, steps=a.steps, batch=a.batch, seed=a.seed, train_seconds=train_s, cfg=cfg.to_dict()),
              open(os.path.join(a.out, "results.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
