"""FastCache's learned KV compressor (CCM) for the tiny shapes VLM, trained by distillation.

What it is (FastCache `--comp_mode ccm`, its KVCacheLinearDecoupleCompressor for LLaVA): per decoder layer,
the image tokens' cached keys and values are cut into groups of `factor` consecutive tokens; each KV head's
group (factor x head_dim values, concatenated in token order) goes through an MLP
  Linear(factor*hd -> hd), ReLU, Linear(hd -> hd), ReLU, Linear(hd -> hd)
one for keys and one for values ("decoupled"), shared by the heads of the layer; its output is ONE new cache
row (a merged token) in place of the group. A remainder of fewer than `factor` tokens is kept as is. Here only
the image span is compressed (FastCache also compresses text with a second pair of MLPs): 64 image tokens at
factor 4 become 16 rows, ratio 0.75 of the image tokens evicted. FastCache trains with dropout 0.4; these
MLPs are 4 x 12 k parameters on a small task, trained without it.

Positions: the cache holds keys after RoPE, so a merged key is a learned vector in that rotated space and has
no position of its own; every token after the image keeps its true position (its query and key are rotated at
the index it had in the uncompressed prompt), as with the selection presses. Only the KV of the compressed
rows changes: the prompt is prefilled uncompressed (the first answer token comes from that prefill), the
cache is compressed, and the answer tokens after it attend to the compressed cache -- the engine's
compress-after-prefill order.

Training: the VLM is frozen; KL(teacher || student) over the full vocabulary at every answer position after
the first, teacher = the uncompressed model, student = the same model reading the compressed cache;
answers teacher-forced on the reference answer. Data: drawn_data's training scenes (the VLM's own
second-generation distribution).

  /usr/bin/python3 train/ccm.py --ckpt train/out/<run>/ckpt.pt --factor 4 --steps 1500 --out train/out/ccm

Writes <out>/ccm.pt; train/export.py --ccm <out>/ccm.pt exports it beside the model.
"""
import argparse
import json
import math
import os
import random
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import drawn_data as DD  # noqa: E402
import shapes_data as D  # noqa: E402
import train as T  # noqa: E402
from model import IMAGE_TOKEN_ID, attention, load_vlm, rotate_half, rope_cos_sin  # noqa: E402

N_IMAGE = D.IMAGE_SEQ_LEN


def mlp(factor, hd):
    return nn.Sequential(nn.Linear(factor * hd, hd), nn.ReLU(), nn.Linear(hd, hd), nn.ReLU(), nn.Linear(hd, hd))


class CCM(nn.Module):
    def __init__(self, layers, head_dim, factor):
        super().__init__()
        self.factor = factor
        self.head_dim = head_dim
        self.ik = nn.ModuleList(mlp(factor, head_dim) for _ in range(layers))
        self.iv = nn.ModuleList(mlp(factor, head_dim) for _ in range(layers))

    def merged_rows(self, n):
        return n // self.factor + n % self.factor

    def compress(self, layer, k, v):
        """k, v: [B, kv_heads, n, hd] (the image span, keys after RoPE) -> [B, kv_heads, n // f + n % f, hd]."""
        B, H, n, hd = k.shape
        g = n // self.factor
        cut = g * self.factor

        def one(x, net):
            merged = net(x[:, :, :cut].reshape(B, H, g, self.factor * hd))
            return torch.cat([merged, x[:, :, cut:]], dim=2)

        return one(k, self.ik[layer]), one(v, self.iv[layer])


def layer_qkv(layer, c, x, cos, sin):
    B, T_, _ = x.shape
    hd = c.head_dim
    a = layer.self_attn
    h = layer.input_layernorm(x)
    q = a.q_proj(h).view(B, T_, c.heads, hd).transpose(1, 2)
    k = a.k_proj(h).view(B, T_, c.kv_heads, hd).transpose(1, 2)
    v = a.v_proj(h).view(B, T_, c.kv_heads, hd).transpose(1, 2)
    return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin, v


def forward(model, e, start, n_prompt, ccm=None, capture=None):
    """Final hidden states of embeddings e [B, T, D] (same prompt layout in every row: the image span is
    [start, start + 64), the prompt n_prompt tokens). With ccm: positions >= n_prompt attend to the prompt's
    KV with the image span compressed (per layer), positions < n_prompt to the full prompt (the prefill).
    capture: a list receiving per layer the image span's (k, v) and their compressed rows (kc, vc)."""
    c = model.cfg
    tm = model.model.text_model
    B, T_, _ = e.shape
    cos, sin = rope_cos_sin(c, T_, e.device)
    mask = torch.full((T_, T_), float("-inf")).triu(1)[None, None]
    rep = c.heads // c.kv_heads
    scale = 1.0 / math.sqrt(c.head_dim)
    x = e
    for li, layer in enumerate(tm.layers):
        q, k, v = layer_qkv(layer, c, x, cos, sin)
        if ccm is None:
            att = attention(q, k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1), scale, mask)
        else:
            kc, vc = ccm.compress(li, k[:, :, start:start + N_IMAGE], v[:, :, start:start + N_IMAGE])
            if capture is not None:
                capture.append((k[:, :, start:start + N_IMAGE], v[:, :, start:start + N_IMAGE], kc, vc))
            end = start + N_IMAGE
            ks = torch.cat([k[:, :, :start], kc, k[:, :, end:]], dim=2)
            vs = torch.cat([v[:, :, :start], vc, v[:, :, end:]], dim=2)
            pre = attention(q[:, :, :n_prompt], k[:, :, :n_prompt].repeat_interleave(rep, 1),
                            v[:, :, :n_prompt].repeat_interleave(rep, 1), scale, mask[..., :n_prompt, :n_prompt])
            # the answer rows: every compressed prompt row, then the answer causally
            m = n_prompt - N_IMAGE + kc.shape[2]
            amask = torch.zeros(T_ - n_prompt, ks.shape[2])
            amask[:, m:] = mask[0, 0, n_prompt:, n_prompt:]
            post = attention(q[:, :, n_prompt:], ks.repeat_interleave(rep, 1), vs.repeat_interleave(rep, 1), scale,
                             amask[None, None])
            att = torch.cat([pre, post], dim=2)
        x = x + layer.self_attn.o_proj(att.transpose(1, 2).reshape(B, T_, c.heads * c.head_dim))
        x = x + layer.mlp(layer.post_attention_layernorm(x))
    return tm.norm(x)


def batch_inputs(model, tok, items):
    """Embeddings of prompt + answer for items sharing one prompt length (same question text length is not
    needed: rows are right-padded, and the padded positions never feed a real one)."""
    seqs = [tok.prompt(it["question"]) + tok.answer(it["answer"]) for it in items]
    plen = [len(tok.prompt(it["question"])) for it in items]
    return seqs, plen


def run_group(model, ccm, tok, items, px):
    """Items that share the prompt length: (teacher logits, student logits, targets) at the answer positions
    after the first (the ones the compressed cache decides)."""
    seqs, plen = batch_inputs(model, tok, items)
    P = plen[0]
    T_ = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T_), T.PAD_ID, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s)
    e = model.embed(ids, px)
    start = int((ids[0] == IMAGE_TOKEN_ID).nonzero()[0])
    with torch.no_grad():
        ht = forward(model, e, start, P)
    hs = forward(model, e, start, P, ccm)
    bi, pi, tg = [], [], []
    for i, s in enumerate(seqs):
        for p in range(P, len(s) - 1):  # answer token at p predicts p + 1
            bi.append(i)
            pi.append(p)
            tg.append(s[p + 1])
    bi, pi = torch.tensor(bi), torch.tensor(pi)
    W = model.model.text_model.embed_tokens.weight
    return ht[bi, pi] @ W.t(), hs[bi, pi] @ W.t(), torch.tensor(tg), bi


def groups_by_prompt_len(tok, items):
    by = {}
    for it in items:
        by.setdefault(len(tok.prompt(it["question"])), []).append(it)
    return list(by.values())


@torch.no_grad()
def ccm_eval(model, ccm, tok, items, pixels_of=None):
    """Teacher-forced exact match with the compressed cache deciding every answer token after the first and
    the uncompressed prefill the first (= greedy exact match of the engine's compress-after-prefill order)."""
    per = {}
    for grp in groups_by_prompt_len(tok, items):
        for b0 in range(0, len(grp), 32):
            chunk = grp[b0:b0 + 32]
            px = torch.stack([pixels_of(it) if pixels_of else T.scene_pixels(it["scene"]) for it in chunk])
            seqs, plen = batch_inputs(model, tok, chunk)
            P = plen[0]
            _, ls, tg, bi = run_group(model, ccm, tok, chunk, px)
            # the first answer token: the uncompressed prefill's argmax at the last prompt position
            T_ = max(len(s) for s in seqs)
            ids = torch.full((len(seqs), T_), T.PAD_ID, dtype=torch.long)
            for i, s in enumerate(seqs):
                ids[i, :len(s)] = torch.tensor(s)
            h = model.hidden(ids, px)
            first = model.logits(h[:, P - 1]).argmax(-1)
            wrong = (first != ids[:, P]).long()
            wrong.index_add_(0, bi, (ls.argmax(-1) != tg).long())
            for it, w in zip(chunk, wrong.tolist()):
                per.setdefault(it["qtype"], []).append(w == 0)
    return {k: round(sum(v) / len(v), 3) for k, v in per.items()}


class _Identity:
    """A compressor that keeps every row: the compressed path must then give the uncompressed hidden states."""

    def compress(self, layer, k, v):
        return k, v


@torch.no_grad()
def self_check(model, tok, items):
    """forward() without a compressor = the model's own forward, and with an identity compressor the same."""
    grp = groups_by_prompt_len(tok, items)[0][:4]
    seqs, plen = batch_inputs(model, tok, grp)
    ids = torch.full((len(seqs), max(map(len, seqs))), T.PAD_ID, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s)
    e = model.embed(ids, torch.stack([T.scene_pixels(it["scene"]) for it in grp]))
    start = int((ids[0] == IMAGE_TOKEN_ID).nonzero()[0])
    ref = model.model.text_model(e)
    for name, h in (("plain", forward(model, e, start, plen[0])), ("identity", forward(model, e, start, plen[0], _Identity()))):
        err = float((h - ref).abs().max())
        assert err < 1e-4, f"ccm.forward ({name}) differs from the model's forward by {err}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", required=True, help="the VLM (frozen)")
    ap.add_argument("--factor", type=int, default=4)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=24)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--data-offset", type=int, default=500_000)
    ap.add_argument("--type-weights", default="describe=3")
    ap.add_argument("--n-eval", type=int, default=140)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--seed", type=int, default=4321)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="train/out/ccm")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    os.makedirs(a.out, exist_ok=True)
    P = T.run_logger(a.out)

    cmd = "/usr/bin/python3 train/ccm.py " + " ".join(sys.argv[1:])
    P(f"==== {time.strftime('%Y-%m-%d %H:%M:%S')} command: {cmd}")
    model, _ = load_vlm(a.ckpt)
    for p in model.parameters():
        p.requires_grad_(False)
    c = model.cfg
    ccm = CCM(c.layers, c.head_dim, a.factor)
    tw = {k: 1.0 for k in D.QTYPES}
    for kv in filter(None, a.type_weights.split(",")):
        k, v = kv.split("=")
        tw[k] = float(v)
    rng = random.Random(a.seed)
    n_items = a.steps * a.batch
    train_items = [DD.get_item("train", a.data_offset + i, rng.choices(list(tw), list(tw.values()))[0]) for i in range(n_items)]
    test_items = [DD.get_item("test", i) for i in range(a.n_eval)]
    tok = T.Tok(a.out, train_items + test_items)
    self_check(model, tok, test_items)
    opt = torch.optim.AdamW(ccm.parameters(), lr=a.lr, weight_decay=0.01)
    t0 = time.time()
    ema = None
    for step in range(a.steps):
        lr = a.lr * min(1.0, (step + 1) / 50) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / a.steps)))
        for g in opt.param_groups:
            g["lr"] = lr
        batch = train_items[step * a.batch:(step + 1) * a.batch]
        loss_sum, n_pos = 0.0, 0
        opt.zero_grad(set_to_none=True)
        for grp in groups_by_prompt_len(tok, batch):
            px = torch.stack([T.scene_pixels(it["scene"]) for it in grp])
            lt, ls, _, _ = run_group(model, ccm, tok, grp, px)
            if not len(lt):
                continue
            kl = F.kl_div(F.log_softmax(ls, -1), F.log_softmax(lt, -1), log_target=True, reduction="sum")
            (kl / (a.batch * 4)).backward()
            loss_sum += float(kl)
            n_pos += len(lt)
        torch.nn.utils.clip_grad_norm_(ccm.parameters(), 1.0)
        opt.step()
        kl_pos = loss_sum / max(1, n_pos)
        ema = kl_pos if ema is None else 0.97 * ema + 0.03 * kl_pos
        if step % 50 == 0 or step == a.steps - 1:
            P(f"step {step} KL/position {kl_pos:.4f} ema {ema:.4f} lr {lr:.2e} {time.time() - t0:.0f}s")
        if (step + 1) % a.eval_every == 0 or step == a.steps - 1:
            P(f"  eval step {step + 1}: drawn test ({a.n_eval}) with CCM {json.dumps(ccm_eval(model, ccm, tok, test_items))}")
    info = dict(command=cmd, seed=a.seed, factor=a.factor, steps=a.steps, batch=a.batch, train_seconds=round(time.time() - t0, 1),
                vlm=os.path.abspath(a.ckpt))
    torch.save(dict(ccm=ccm.state_dict(), factor=a.factor, layers=c.layers, head_dim=c.head_dim, train_info=info),
               os.path.join(a.out, "ccm.pt"))
    P(f"saved {os.path.join(a.out, 'ccm.pt')} ({sum(p.numel() for p in ccm.parameters())} parameters, {info['train_seconds']} s)")


if __name__ == "__main__":
    main()
