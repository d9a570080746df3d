"""Tiny VLM in the Idefics3 / SmolVLM layout (PyTorch 1.13, CPU).

  vision  : SigLIP-style ViT   model.vision_model.*   (conv patch embedding, learned position
            embedding, pre-LN encoder layers with GELU-tanh MLP, post_layernorm)
  connector: Idefics3 pixel shuffle (scale_factor) + Linear(no bias)
            model.connector.modality_projection.proj.weight
  text    : Llama (GQA, RMSNorm, RoPE rotate-half, SiLU MLP) model.text_model.*
            tied embeddings (no lm_head.weight), vocab = real SmolVLM tokenizer (49280)

Image tokens (id 49190) in input_ids are replaced by the connector outputs in order, exactly as
Idefics3Model.inputs_merger does.
"""
import math
from dataclasses import dataclass, asdict

import torch
import torch.nn as nn
import torch.nn.functional as F

IMAGE_TOKEN_ID = 49190

# Training speed only: Debian's CPU torch runs bmm on these shapes ~3x slower than a loop of mm
# (BLAS) calls. train.py sets this True; eval/export keep the plain batched form (the same math; it
# traces to a batch-size-independent ONNX graph).
LOOP_ATTENTION = False


def attention(q, k, v, scale, mask=None):
    """softmax(q k^T * scale + mask) v for q,k,v [B,H,T,hd] (k, v already expanded to H heads)."""
    if not LOOP_ATTENTION:
        s = (q @ k.transpose(-1, -2)) * scale
        if mask is not None:
            s = s + mask
        return torch.softmax(s, dim=-1) @ v
    B, H, T, hd = q.shape
    # unbind (not indexing): its backward is one stack, indexing's is a full-size zero fill per slice
    qs, ks, vs = q.reshape(B * H, T, hd).unbind(0), k.reshape(B * H, T, hd).unbind(0), v.reshape(B * H, T, hd).unbind(0)
    m = None if mask is None else mask.reshape(T, T)
    outs = []
    for qi, ki, vi in zip(qs, ks, vs):
        s = torch.mm(qi, ki.t()) * scale
        if m is not None:
            s = s + m
        outs.append(torch.mm(torch.softmax(s, dim=-1), vi))
    return torch.stack(outs).view(B, H, T, hd)
END_OF_UTTERANCE_ID = 49279


@dataclass
class Cfg:
    image_size: int = 128
    patch_size: int = 8
    v_hidden: int = 64
    v_layers: int = 2
    v_heads: int = 2
    v_inter: int = 256
    v_eps: float = 1e-6
    # 0: SigLIP's patchify conv; C > 0: a convolutional stem (log2(patch_size) stride-2 3x3 convs of C, 2C, ...
    # channels) in its place -- "early convolutions help transformers see" (Xiao et al., 2021): a ViT with a
    # patchify stem did not learn contours (circle vs square) from this data in the CPU budget
    v_stem: int = 0
    # stride-1 3x3 convs (v_hidden wide) closing the stem: each widens a patch's view by 16 px, so a patch
    # near an object's centre sees the whole object (its contour) before the encoder layers
    v_stem_extra: int = 0
    scale_factor: int = 2
    vocab: int = 49280
    hidden: int = 128
    layers: int = 3
    heads: int = 4
    kv_heads: int = 2
    inter: int = 256
    rope_theta: float = 100000.0
    rms_eps: float = 1e-5
    max_pos: int = 512

    @property
    def head_dim(self):
        return self.hidden // self.heads

    def to_dict(self):
        return asdict(self)


# ---------------------------------------------------------------- vision (SigLIP)
class VAttn(nn.Module):
    def __init__(self, c):
        super().__init__()
        d = c.v_hidden
        self.h = c.v_heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(d, d) for _ in range(4))

    def forward(self, x):
        B, T, D = x.shape
        hd = D // self.h
        q = self.q_proj(x).view(B, T, self.h, hd).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.h, hd).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.h, hd).transpose(1, 2)
        a = attention(q, k, v, 1.0 / math.sqrt(hd))
        return self.out_proj(a.transpose(1, 2).reshape(B, T, D))


class VMLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.fc1 = nn.Linear(c.v_hidden, c.v_inter)
        self.fc2 = nn.Linear(c.v_inter, c.v_hidden)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class VLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(c.v_hidden, eps=c.v_eps)
        self.self_attn = VAttn(c)
        self.layer_norm2 = nn.LayerNorm(c.v_hidden, eps=c.v_eps)
        self.mlp = VMLP(c)

    def forward(self, x):
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class VEmbeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        if c.v_stem:
            n = int(math.log2(c.patch_size))
            assert 2 ** n == c.patch_size, "a conv stem needs a power-of-two patch size"
            chans = [3] + [c.v_stem * 2 ** i for i in range(n - 1)] + [c.v_hidden]
            convs = [nn.Conv2d(chans[i], chans[i + 1], 3, 2, 1) for i in range(n)]
            convs += [nn.Conv2d(c.v_hidden, c.v_hidden, 3, 1, 1) for _ in range(c.v_stem_extra)]
            self.stem = nn.Sequential(*[m for cv in convs[:-1] for m in (cv, nn.GELU(approximate="tanh"))], convs[-1])
        else:
            self.patch_embedding = nn.Conv2d(3, c.v_hidden, c.patch_size, c.patch_size)
        self.num_patches = (c.image_size // c.patch_size) ** 2
        self.position_embedding = nn.Embedding(self.num_patches, c.v_hidden)
        self.register_buffer("position_ids", torch.arange(self.num_patches)[None], persistent=False)

    def forward(self, px):
        x = (self.stem(px) if hasattr(self, "stem") else self.patch_embedding(px)).flatten(2).transpose(1, 2)
        return x + self.position_embedding(self.position_ids)


class VEncoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layers = nn.ModuleList(VLayer(c) for _ in range(c.v_layers))


class VisionModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embeddings = VEmbeddings(c)
        self.encoder = VEncoder(c)
        self.post_layernorm = nn.LayerNorm(c.v_hidden, eps=c.v_eps)

    def forward(self, px):
        """px: [B,3,H,W] normalized ((x/255-0.5)/0.5) -> last_hidden_state [B, patches, v_hidden]"""
        x = self.embeddings(px)
        for l in self.encoder.layers:
            x = l(x)
        return self.post_layernorm(x)


# ---------------------------------------------------------------- connector (Idefics3)
def pixel_shuffle(x, scale_factor):
    """Identical to transformers Idefics3Connector.pixel_shuffle."""
    bsz, seq, embed_dim = x.size()
    height = width = int(seq ** 0.5)
    x = x.view(bsz, height, width, embed_dim)
    x = x.view(bsz, height, int(width / scale_factor), embed_dim * scale_factor)
    x = x.permute(0, 2, 1, 3)
    x = x.reshape(bsz, int(width / scale_factor), int(height / scale_factor), embed_dim * (scale_factor ** 2))
    x = x.permute(0, 2, 1, 3)
    return x.reshape(bsz, int(seq / (scale_factor ** 2)), embed_dim * (scale_factor ** 2))


class ModalityProjection(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.proj = nn.Linear(c.v_hidden * c.scale_factor ** 2, c.hidden, bias=False)


class Connector(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.scale_factor = c.scale_factor
        self.modality_projection = ModalityProjection(c)

    def forward(self, x):
        return self.modality_projection.proj(pixel_shuffle(x, self.scale_factor))


# ---------------------------------------------------------------- text (Llama)
class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def rope_cos_sin(c, T, device):
    inv = 1.0 / (c.rope_theta ** (torch.arange(0, c.head_dim, 2, dtype=torch.float32, device=device) / c.head_dim))
    f = torch.outer(torch.arange(T, dtype=torch.float32, device=device), inv)
    emb = torch.cat((f, f), dim=-1)
    return emb.cos(), emb.sin()


class Attn(nn.Module):
    # training only (train.py --attn-sup): a list that receives this layer's (q, k) after RoPE
    capture = None

    def __init__(self, c):
        super().__init__()
        self.c = c
        hd = c.head_dim
        self.q_proj = nn.Linear(c.hidden, c.heads * hd, bias=False)
        self.k_proj = nn.Linear(c.hidden, c.kv_heads * hd, bias=False)
        self.v_proj = nn.Linear(c.hidden, c.kv_heads * hd, bias=False)
        self.o_proj = nn.Linear(c.heads * hd, c.hidden, bias=False)

    def forward(self, x, cos, sin, mask):
        c = self.c
        B, T, _ = x.shape
        hd = c.head_dim
        q = self.q_proj(x).view(B, T, c.heads, hd).transpose(1, 2)
        k = self.k_proj(x).view(B, T, c.kv_heads, hd).transpose(1, 2)
        v = self.v_proj(x).view(B, T, c.kv_heads, hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if self.capture is not None:
            self.capture.append((q, k))
        rep = c.heads // c.kv_heads
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        a = attention(q, k, v, 1.0 / math.sqrt(hd), mask)
        return self.o_proj(a.transpose(1, 2).reshape(B, T, c.heads * hd))


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.gate_proj = nn.Linear(c.hidden, c.inter, bias=False)
        self.up_proj = nn.Linear(c.hidden, c.inter, bias=False)
        self.down_proj = nn.Linear(c.inter, c.hidden, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.input_layernorm = RMSNorm(c.hidden, c.rms_eps)
        self.self_attn = Attn(c)
        self.post_attention_layernorm = RMSNorm(c.hidden, c.rms_eps)
        self.mlp = MLP(c)

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class TextModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embed_tokens = nn.Embedding(c.vocab, c.hidden)
        self.layers = nn.ModuleList(Layer(c) for _ in range(c.layers))
        self.norm = RMSNorm(c.hidden, c.rms_eps)

    def forward(self, h, attn_pad=None):
        """h: input embeddings [B,T,D]; attn_pad: [B,T] bool (True = real token) for right padding."""
        B, T, _ = h.shape
        cos, sin = rope_cos_sin(self.c, T, h.device)
        mask = torch.full((T, T), float("-inf"), device=h.device).triu(1)[None, None]
        for l in self.layers:
            h = l(h, cos, sin, mask)
        return self.norm(h)


class Model(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.vision_model = VisionModel(c)
        self.connector = Connector(c)
        self.text_model = TextModel(c)


class TinyVLM(nn.Module):
    def __init__(self, c: Cfg):
        super().__init__()
        self.cfg = c
        self.model = Model(c)
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.normal_(m.weight, std=0.04)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.04)

    def image_features(self, px):
        return self.model.connector(self.model.vision_model(px))  # [B, 64, hidden]

    def embed(self, input_ids, px):
        e = self.model.text_model.embed_tokens(input_ids)
        feats = self.image_features(px)  # [B,64,D]
        m = input_ids == IMAGE_TOKEN_ID
        e = e.clone()
        e[m] = feats.reshape(-1, feats.shape[-1]).to(e.dtype)
        return e

    def hidden(self, input_ids, px):
        return self.model.text_model(self.embed(input_ids, px))

    def logits(self, h):
        return h @ self.model.text_model.embed_tokens.weight.t()

    @torch.no_grad()
    def generate(self, prompt_ids, px, max_new=64, eos=END_OF_UTTERANCE_ID):
        """Greedy (no KV cache; sequences are short). prompt_ids: list[int], px: [1,3,H,W].
        Returns (new_ids, first_step_logits)."""
        ids = list(prompt_ids)
        feats = self.image_features(px)
        out, first = [], None
        for _ in range(max_new):
            t = torch.tensor([ids])
            e = self.model.text_model.embed_tokens(t).clone()
            e[t == IMAGE_TOKEN_ID] = feats.reshape(-1, feats.shape[-1])
            lg = self.logits(self.model.text_model(e)[:, -1])[0]
            if first is None:
                first = lg.clone()
            nxt = int(lg.argmax())
            out.append(nxt)
            ids.append(nxt)
            if nxt == eos:
                break
        return out, first


def load_vlm(path):
    """A checkpoint (train.py's ckpt.pt) as an eval-mode TinyVLM, and the checkpoint dict."""
    ck = torch.load(path, map_location="cpu")
    m = TinyVLM(Cfg(**ck["cfg"]))
    m.load_state_dict(ck["model"])
    m.eval()
    return m, ck
