"""Export a Llama checkpoint (Hugging Face layout: config.json + model.safetensors) to the ONNX
decoder that transformers.js loads for text generation (the optimum "decoder with past" signature):

  inputs   input_ids [batch, seq] int64, attention_mask [batch, past + seq] int64,
           position_ids [batch, seq] int64,
           past_key_values.{i}.key / .value [batch, kv_heads, past, head_dim] f32
  outputs  logits [batch, seq, vocab] f32,
           present.{i}.key / .value [batch, kv_heads, past + seq, head_dim] f32

  /usr/bin/python3 bench/peers/export_onnx.py --model public/models/stories260K --out DIR

Writes DIR/onnx/model.onnx (f32 weights: F16 / BF16 tensors are widened exactly) and copies
config.json (and generation_config.json if present) when DIR is another folder. The forward pass is the Hugging Face
LlamaForCausalLM's (RMSNorm, rotate-half RoPE at the given positions, GQA, SiLU MLP, tied or
separate LM head); the peers benchmark checks its greedy ids against the other runtimes'.
Needs Debian's python3-torch and python3-onnx (no pip packages).
"""
import argparse
import json
import os
import shutil
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "train"))
import torch  # noqa: E402
from torch import nn  # noqa: E402

from safetensors_read import read_safetensors  # noqa: E402


class Cfg:
    def __init__(self, c):
        self.vocab = c["vocab_size"]
        self.hidden = c["hidden_size"]
        self.layers = c["num_hidden_layers"]
        self.heads = c["num_attention_heads"]
        self.kv_heads = c.get("num_key_value_heads", self.heads)
        self.head_dim = c.get("head_dim") or self.hidden // self.heads
        self.eps = c.get("rms_norm_eps", 1e-6)
        self.theta = c.get("rope_theta", 10000.0)
        self.tied = c.get("tie_word_embeddings", False)


def rms(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class Decoder(nn.Module):
    def __init__(self, c, w):
        super().__init__()
        self.c = c
        t = lambda name: nn.Parameter(torch.from_numpy(w[name]), requires_grad=False)  # noqa: E731
        self.embed = t("model.embed_tokens.weight")
        self.norm = t("model.norm.weight")
        self.head = self.embed if c.tied or "lm_head.weight" not in w else t("lm_head.weight")
        self.p = nn.ParameterList()
        self.names = []
        for i in range(c.layers):
            for part in ("input_layernorm", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                         "post_attention_layernorm", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"):
                self.p.append(t(f"model.layers.{i}.{part}.weight"))
        inv = 1.0 / (c.theta ** (torch.arange(0, c.head_dim, 2, dtype=torch.float32) / c.head_dim))
        self.register_buffer("inv_freq", inv, persistent=False)

    def forward(self, input_ids, attention_mask, position_ids, *past):
        c = self.c
        B, T = input_ids.shape
        P = past[0].shape[2]
        h = self.embed[input_ids]
        f = position_ids.to(torch.float32)[..., None] * self.inv_freq
        emb = torch.cat((f, f), dim=-1)[:, None]
        cos, sin = emb.cos(), emb.sin()
        keys = torch.arange(P + T)[None, :]
        queries = (torch.arange(T) + P)[:, None]
        allowed = (keys <= queries)[None, None] & (attention_mask[:, None, None, :] > 0)
        bias = torch.where(allowed, torch.tensor(0.0), torch.tensor(torch.finfo(torch.float32).min))
        rep = c.heads // c.kv_heads
        presents = []
        for i in range(c.layers):
            ln1, wq, wk, wv, wo, ln2, wg, wu, wd = self.p[9 * i: 9 * i + 9]
            x = rms(h, ln1, c.eps)
            q = (x @ wq.t()).view(B, T, c.heads, c.head_dim).transpose(1, 2)
            k = (x @ wk.t()).view(B, T, c.kv_heads, c.head_dim).transpose(1, 2)
            v = (x @ wv.t()).view(B, T, c.kv_heads, c.head_dim).transpose(1, 2)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            k = torch.cat((past[2 * i], k), dim=2)
            v = torch.cat((past[2 * i + 1], v), dim=2)
            presents += [k, v]
            S = k.shape[2]
            kk = k[:, :, None].expand(B, c.kv_heads, rep, S, c.head_dim).reshape(B, c.heads, S, c.head_dim)
            vv = v[:, :, None].expand(B, c.kv_heads, rep, S, c.head_dim).reshape(B, c.heads, S, c.head_dim)
            a = torch.softmax(q @ kk.transpose(-1, -2) / (c.head_dim ** 0.5) + bias, dim=-1) @ vv
            h = h + a.transpose(1, 2).reshape(B, T, c.heads * c.head_dim) @ wo.t()
            x = rms(h, ln2, c.eps)
            h = h + (torch.nn.functional.silu(x @ wg.t()) * (x @ wu.t())) @ wd.t()
        logits = rms(h, self.norm, c.eps) @ self.head.t()
        return (logits, *presents)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="folder with config.json and model.safetensors")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.manual_seed(0)
    config = json.load(open(os.path.join(a.model, "config.json")))
    c = Cfg(config)
    m = Decoder(c, read_safetensors(os.path.join(a.model, "model.safetensors"))).eval()
    os.makedirs(os.path.join(a.out, "onnx"), exist_ok=True)
    past_names = [f"past_key_values.{i}.{kv}" for i in range(c.layers) for kv in ("key", "value")]
    present_names = [f"present.{i}.{kv}" for i in range(c.layers) for kv in ("key", "value")]
    B, T, P = 1, 3, 2  # a nonzero past so that the trace keeps every dimension symbolic
    args = (torch.zeros(B, T, dtype=torch.int64), torch.ones(B, P + T, dtype=torch.int64),
            torch.arange(P, P + T, dtype=torch.int64)[None],
            *[torch.zeros(B, c.kv_heads, P, c.head_dim) for _ in past_names])
    axes = {"input_ids": {0: "batch_size", 1: "sequence_length"},
            "attention_mask": {0: "batch_size", 1: "total_sequence_length"},
            "position_ids": {0: "batch_size", 1: "sequence_length"},
            "logits": {0: "batch_size", 1: "sequence_length"}}
    axes.update({n: {0: "batch_size", 2: "past_sequence_length"} for n in past_names})
    axes.update({n: {0: "batch_size", 2: "total_sequence_length"} for n in present_names})
    path = os.path.join(a.out, "onnx", "model.onnx")
    with torch.no_grad():
        torch.onnx.export(m, args, path, input_names=["input_ids", "attention_mask", "position_ids", *past_names],
                          output_names=["logits", *present_names], dynamic_axes=axes, opset_version=17,
                          do_constant_folding=True)
    for name in ("config.json", "generation_config.json"):
        if os.path.exists(os.path.join(a.model, name)) and os.path.abspath(a.model) != os.path.abspath(a.out):
            shutil.copy(os.path.join(a.model, name), os.path.join(a.out, name))
    print(f"wrote {path} ({os.path.getsize(path) / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
