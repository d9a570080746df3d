"""Generate two tiny RANDOM-weight VLMs for tests (their answers are meaningless).

  /usr/bin/python3 scripts/make_tiny_vlms.py            # writes both folders
  /usr/bin/python3 scripts/make_tiny_vlms.py --check    # regenerate into a temp dir, compare bytes

Deterministic (fixed seeds, CPU, one thread): re-running writes byte-identical files.
Needs torch 1.13 (CPU), onnx, numpy, PIL. The PyTorch modules come from train/model.py.

public/models/tiny-vlm-idefics3/   Idefics3 / SmolVLM layout, with image splitting
  config.json                 real SmolVLM-256M config, reduced: text llama hidden 32, 2 layers,
                              4 heads / 2 KV heads (head_dim 8), inter 64, tied embeddings;
                              vision SigLIP 64 px tiles, patch 8, hidden 24; scale_factor 2
  model.safetensors           model.text_model.* (embed_tokens F16, the rest F32) +
                              model.connector.modality_projection.proj.weight (F32) [32, 96]
  onnx/vision_encoder.onnx    opset 16. pixel_values f32 [batch_size, num_images, 3, 64, 64],
                              pixel_attention_mask bool [batch_size, num_images, 64, 64]
                              (used: pixels are multiplied by it) -> image_features f32
                              [batch_size*num_images, 16, 32] (connector applied)
  preprocessor_config.json    real one, do_image_splitting true, max_image_size 64, size 128
                              (an image becomes up to 2x2 tiles of 64 px + one global 64 px image)
  processor_config.json       image_seq_len 16
  reference/                  image.png (128x128), pixel_values.f32 [1, 5, 3, 64, 64] (its four
                              64 px tiles, row-major, then a 2x2-average-pooled global image),
                              image_features.f32 [5, 16, 32], meta.json

public/models/tiny-vlm-llava/      LLaVA layout, Qwen2 decoder
  config.json                 model_type llava; text qwen2 hidden 32, 2 layers, 4 heads / 2 KV
                              heads, inter 64, untied lm_head; vision siglip 32 px, patch 8, hidden 48
  model.safetensors           language_model.model.* (embed_tokens F16, the rest F32),
                              language_model.lm_head.weight (F16),
                              multi_modal_projector.linear_1.{weight,bias} [32, 48], [32] (F32)
                              multi_modal_projector.linear_2.{weight,bias} [32, 32], [32] (F32)
                              (projector: linear_2(gelu_erf(linear_1(x))))
  onnx/vision_encoder.onnx    opset 16. pixel_values f32 [batch_size, 3, 32, 32] -> image_features
                              f32 [batch_size, 16, 48] (= hidden_states[-1]: the last encoder
                              layer's output, no post_layernorm, as LLaVA's vision_feature_layer -1;
                              NOT projected)
  preprocessor_config.json    CLIPImageProcessor, 32 px, CLIP mean/std
  processor_config.json       LlavaProcessor, patch_size 8 -> 16 <image> tokens per image
  reference/                  image.png (32x32), pixel_values.f32 [1, 3, 32, 32],
                              image_features.f32 [1, 16, 48], projected_features.f32 [1, 16, 32]
                              (the projector applied in torch), meta.json

Both: tokenizer files copied from the real SmolVLM-256M-Instruct repo (<image> = 49190),
README.md, manifest.sha256 (sha256 of every other file), "fastcache_random_weights": true in
config.json. F16 is used only for the two vocab-sized matrices, to keep the folders small.
"""
import argparse
import filecmp
import io
import json
import math
import os
import shutil
import sys
import tempfile

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "train"))
from model import Cfg, TinyVLM, VisionModel  # noqa: E402
from safetensors_write import write_safetensors  # noqa: E402
from manifest import write_manifest  # noqa: E402

REAL = "/work/shared/models/smolvlm-256m-instruct-files"
TOKENIZER_FILES = ["tokenizer.json", "special_tokens_map.json", "added_tokens.json", "vocab.json", "merges.txt",
                   "generation_config.json"]
IMAGE_TOKEN_ID = 49190
VOCAB = 49280
OPSET = 16
SCRIPT = "/usr/bin/python3 scripts/make_tiny_vlms.py"


# ------------------------------------------------------------------------------------ helpers
def randomize(module, seed, skip=()):
    """Fill every parameter (sorted by name) from one seeded generator, at init scale:
    matrices / conv kernels N(0, 1/fan_in), embeddings N(0, 0.2^2) (logits not degenerate), biases N(0, 0.02^2),
    norm weights 1 + N(0, 0.1^2) (so a kernel that ignores them is caught), norm biases N(0, 0.02^2)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(module.named_parameters(), key=lambda kv: kv[0]):
            if any(name.startswith(s) for s in skip):
                continue
            leaf = name.rsplit(".", 1)[-1]
            is_norm = "norm" in name
            if is_norm and leaf == "weight":
                v = 1.0 + 0.1 * torch.randn(p.shape, generator=g)
            elif leaf == "bias":
                v = 0.02 * torch.randn(p.shape, generator=g)
            elif "embed_tokens" in name or "position_embedding" in name or "lm_head" in name:
                v = 0.2 * torch.randn(p.shape, generator=g)
            else:
                fan_in = int(np.prod(p.shape[1:]))
                v = torch.randn(p.shape, generator=g) / math.sqrt(fan_in)
            p.copy_(v)


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def write_f32(path, t):
    np.ascontiguousarray(t.detach().cpu().numpy().astype("<f4")).tofile(path)


def random_image(size, seed):
    """A seeded random-coloured block pattern (8x8 blocks of random colours plus a few random rectangles)."""
    rs = np.random.RandomState(seed)
    img = np.kron(rs.randint(0, 256, size=(size // 8, size // 8, 3)), np.ones((8, 8, 1))).astype(np.uint8)
    for _ in range(4):
        y0, x0 = rs.randint(0, size - 4, size=2)
        h, w = rs.randint(3, size // 2, size=2)
        img[y0:y0 + h, x0:x0 + w] = rs.randint(0, 256, size=3)
    return img


def save_png(path, arr):
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, format="PNG", optimize=False, compress_level=9)
    with open(path, "wb") as f:
        f.write(buf.getvalue())


def export_onnx(module, args, path, input_names, output_names, dynamic_axes, output_shape):
    """Export with torch.onnx (opset OPSET), then name the output's dims exactly: output_shape entries are
    ints (static) or strings (dim_param); the exporter's own inferred names for static dims are replaced."""
    buf = io.BytesIO()
    torch.onnx.export(module, args, buf, opset_version=OPSET, input_names=input_names, output_names=output_names,
                      dynamic_axes=dynamic_axes, do_constant_folding=True)
    import onnx
    m = onnx.load_from_string(buf.getvalue())
    (out,) = m.graph.output
    dims = out.type.tensor_type.shape.dim
    assert len(dims) == len(output_shape), (out.name, len(dims), output_shape)
    for dim, want in zip(dims, output_shape):
        dim.Clear()
        if isinstance(want, int):
            dim.dim_value = want
        else:
            dim.dim_param = want
    onnx.checker.check_model(m, full_check=True)
    with open(path, "wb") as f:
        f.write(m.SerializeToString())
    return sorted({n.op_type for n in m.graph.node})


def copy_tokenizer(dst):
    for fn in TOKENIZER_FILES:
        shutil.copyfile(os.path.join(REAL, fn), os.path.join(dst, fn))


def fresh_dir(dst):
    if os.path.isdir(dst):
        shutil.rmtree(dst)
    os.makedirs(os.path.join(dst, "onnx"))
    os.makedirs(os.path.join(dst, "reference"))


# ------------------------------------------------------------------------------------ idefics3
class Idefics3Vision(nn.Module):
    """pixel_values [B, N, 3, S, S], pixel_attention_mask bool [B, N, S, S] -> image_features [B*N, T, D].
    The mask multiplies the pixels (all-true for real images, so exact; padded images are zeros anyway)."""

    def __init__(self, m, size):
        super().__init__()
        self.v = m.model.vision_model
        self.c = m.model.connector
        self.size = size

    def forward(self, pixel_values, pixel_attention_mask):
        s = self.size
        px = pixel_values * pixel_attention_mask.unsqueeze(2).to(pixel_values.dtype)
        px = px.reshape(-1, 3, s, s)
        return self.c(self.v(px))


def make_idefics3(dst):
    tile, patch, sf = 64, 8, 2
    cfg = Cfg(image_size=tile, patch_size=patch, v_hidden=24, v_layers=2, v_heads=2, v_inter=64, scale_factor=sf,
              vocab=VOCAB, hidden=32, layers=2, heads=4, kv_heads=2, inter=64, rope_theta=100000.0, rms_eps=1e-5,
              max_pos=2048)
    tokens_per_tile = (tile // patch) ** 2 // (sf * sf)
    torch.manual_seed(0)
    m = TinyVLM(cfg)
    randomize(m, seed=6001)
    m.eval()
    fresh_dir(dst)

    sd = m.state_dict()
    tens = {k: v for k, v in sd.items() if k.startswith("model.text_model.") or k.startswith("model.connector.")}
    write_safetensors(os.path.join(dst, "model.safetensors"), tens, f16={"model.text_model.embed_tokens.weight"})

    ex = Idefics3Vision(m, tile).eval()
    dummy = (torch.zeros(1, 2, 3, tile, tile), torch.ones(1, 2, tile, tile, dtype=torch.bool))
    ops = export_onnx(ex, dummy, os.path.join(dst, "onnx", "vision_encoder.onnx"),
                      ["pixel_values", "pixel_attention_mask"], ["image_features"],
                      {"pixel_values": {0: "batch_size", 1: "num_images"},
                       "pixel_attention_mask": {0: "batch_size", 1: "num_images"},
                       "image_features": {0: "batch_size*num_images"}},
                      ["batch_size*num_images", tokens_per_tile, cfg.hidden])

    conf = json.load(open(os.path.join(REAL, "config.json")))
    tc, vc = conf["text_config"], conf["vision_config"]
    tc.update(hidden_size=cfg.hidden, num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads,
              num_key_value_heads=cfg.kv_heads, head_dim=cfg.head_dim, intermediate_size=cfg.inter,
              vocab_size=cfg.vocab, rope_theta=cfg.rope_theta, rms_norm_eps=cfg.rms_eps,
              max_position_embeddings=cfg.max_pos, tie_word_embeddings=True, pixel_shuffle_factor=sf,
              torch_dtype="float32")
    vc.update(hidden_size=cfg.v_hidden, num_hidden_layers=cfg.v_layers, num_attention_heads=cfg.v_heads,
              intermediate_size=cfg.v_inter, image_size=tile, patch_size=patch, layer_norm_eps=cfg.v_eps,
              hidden_act="gelu_pytorch_tanh", max_image_size={"longest_edge": tile}, size={"longest_edge": 2 * tile})
    conf.update(scale_factor=sf, tie_word_embeddings=True, torch_dtype="float32")
    conf = {"fastcache_random_weights": True, **conf}
    write_json(os.path.join(dst, "config.json"), conf)

    pp = json.load(open(os.path.join(REAL, "preprocessor_config.json")))
    pp.update(do_image_splitting=True, max_image_size={"longest_edge": tile}, size={"longest_edge": 2 * tile})
    write_json(os.path.join(dst, "preprocessor_config.json"), pp)
    proc = json.load(open(os.path.join(REAL, "processor_config.json")))
    proc.update(image_seq_len=tokens_per_tile)
    write_json(os.path.join(dst, "processor_config.json"), proc)
    copy_tokenizer(dst)
    for fn in ["tokenizer_config.json", "chat_template.json"]:
        shutil.copyfile(os.path.join(REAL, fn), os.path.join(dst, fn))

    # reference: a 128x128 image -> its 4 exact 64 px tiles (row-major) + a 2x2-average-pooled global image
    img = random_image(2 * tile, seed=61)
    save_png(os.path.join(dst, "reference", "image.png"), img)
    x = torch.from_numpy(img.astype(np.float32)).permute(2, 0, 1) / 255.0  # [3, 128, 128], rescale
    tiles = [x[:, r * tile:(r + 1) * tile, c * tile:(c + 1) * tile] for r in range(2) for c in range(2)]
    glob = F.avg_pool2d(x[None], 2)[0]
    px = (torch.stack(tiles + [glob])[None] - 0.5) / 0.5  # normalize, mean/std 0.5 -> [1, 5, 3, 64, 64]
    mask = torch.ones(1, 5, tile, tile, dtype=torch.bool)
    with torch.no_grad():
        feats = ex(px, mask)
    write_f32(os.path.join(dst, "reference", "pixel_values.f32"), px)
    write_f32(os.path.join(dst, "reference", "image_features.f32"), feats)
    write_json(os.path.join(dst, "reference", "meta.json"), {
        "image": "image.png",
        "image_size": [2 * tile, 2 * tile],
        "pixel_values": "pixel_values.f32",
        "pixel_values_shape": list(px.shape),
        "pixel_values_note": "float32 little-endian; images 0..3 are the exact 64x64 tiles of image.png "
                             "(row-major), image 4 is image.png average-pooled 2x2; each = (rgb/255 - 0.5) / 0.5. "
                             "transformers.js 4.3.1's Idefics3Processor gives the same [1, 5, 3, 64, 64] for "
                             "image.png (tiles exactly, the global image within 2e-7)",
        "pixel_attention_mask": "all true",
        "image_features": "image_features.f32",
        "image_features_shape": list(feats.shape),
        "tokens_per_image": tokens_per_tile,
        "onnx": {"inputs": ["pixel_values", "pixel_attention_mask"], "outputs": ["image_features"], "opset": OPSET,
                 "ops": ops},
        "image_token_id": IMAGE_TOKEN_ID,
    })
    with open(os.path.join(dst, "README.md"), "w") as f:
        f.write(f"""# tiny-vlm-idefics3

RANDOM weights, for tests only: the answers are meaningless. Generated by `{SCRIPT}`
(deterministic; do not edit by hand, re-run the script). Seed 6001.

Idefics3 / SmolVLM layout (as HuggingFaceTB/SmolVLM-256M-Instruct), reduced shapes:
text llama hidden {cfg.hidden}, {cfg.layers} layers, {cfg.heads} heads / {cfg.kv_heads} KV heads (head_dim {cfg.head_dim}),
intermediate {cfg.inter}, vocab {cfg.vocab}, tied embeddings (embed_tokens stored F16, the rest F32);
vision SigLIP {tile} px tiles, patch {patch}, hidden {cfg.v_hidden}, {cfg.v_layers} layers; pixel shuffle {sf} ->
{tokens_per_tile} image tokens per tile. Image splitting is on: an image is resized to longest edge {2 * tile},
split into up to 2x2 tiles of {tile} px, plus one global {tile} px image.

`onnx/vision_encoder.onnx` (opset {OPSET}): pixel_values f32 [batch_size, num_images, 3, {tile}, {tile}],
pixel_attention_mask bool [batch_size, num_images, {tile}, {tile}] -> image_features f32
[batch_size*num_images, {tokens_per_tile}, {cfg.hidden}] (connector applied).

`reference/`: image.png and torch's image_features for the pixel_values in pixel_values.f32 (see meta.json).
Tokenizer files: copied from SmolVLM-256M-Instruct.
""")
    write_manifest(dst)


# ------------------------------------------------------------------------------------ llava
class Qwen2Layer(nn.Module):
    def __init__(self, d, heads, kv, hd, inter):
        super().__init__()
        self.input_layernorm = nn.Module()
        self.input_layernorm.weight = nn.Parameter(torch.ones(d))
        self.post_attention_layernorm = nn.Module()
        self.post_attention_layernorm.weight = nn.Parameter(torch.ones(d))
        self.self_attn = nn.Module()
        self.self_attn.q_proj = nn.Linear(d, heads * hd, bias=True)
        self.self_attn.k_proj = nn.Linear(d, kv * hd, bias=True)
        self.self_attn.v_proj = nn.Linear(d, kv * hd, bias=True)
        self.self_attn.o_proj = nn.Linear(heads * hd, d, bias=False)
        self.mlp = nn.Module()
        self.mlp.gate_proj = nn.Linear(d, inter, bias=False)
        self.mlp.up_proj = nn.Linear(d, inter, bias=False)
        self.mlp.down_proj = nn.Linear(inter, d, bias=False)


class Qwen2Weights(nn.Module):
    """Parameter holder in llava-hf naming (the forward pass is not needed here)."""

    def __init__(self, vocab, d, layers, heads, kv, inter):
        super().__init__()
        self.model = nn.Module()
        self.model.embed_tokens = nn.Embedding(vocab, d)
        self.model.layers = nn.ModuleList(Qwen2Layer(d, heads, kv, d // heads, inter) for _ in range(layers))
        self.model.norm = nn.Module()
        self.model.norm.weight = nn.Parameter(torch.ones(d))
        self.lm_head = nn.Linear(d, vocab, bias=False)


class LlavaVision(nn.Module):
    """SigLIP tower -> hidden_states[-1] (last encoder layer output, no post_layernorm)."""

    def __init__(self, v):
        super().__init__()
        self.v = v

    def forward(self, pixel_values):
        x = self.v.embeddings(pixel_values)
        for l in self.v.encoder.layers:
            x = l(x)
        return x


def make_llava(dst):
    size, patch = 32, 8
    d, layers, heads, kv, inter = 32, 2, 4, 2, 64
    vcfg = Cfg(image_size=size, patch_size=patch, v_hidden=48, v_layers=2, v_heads=2, v_inter=96)
    n_tok = (size // patch) ** 2
    torch.manual_seed(0)
    lm = Qwen2Weights(VOCAB, d, layers, heads, kv, inter)
    vision = VisionModel(vcfg)
    proj = nn.Module()
    proj.linear_1 = nn.Linear(vcfg.v_hidden, d)
    proj.linear_2 = nn.Linear(d, d)
    randomize(lm, seed=7001)
    randomize(vision, seed=7002)
    randomize(proj, seed=7003)
    fresh_dir(dst)

    tens = {f"language_model.{k}": v for k, v in lm.state_dict().items()}
    tens.update({f"multi_modal_projector.{k}": v for k, v in proj.state_dict().items()})
    write_safetensors(os.path.join(dst, "model.safetensors"), tens,
                      f16={"language_model.model.embed_tokens.weight", "language_model.lm_head.weight"})

    ex = LlavaVision(vision).eval()
    ops = export_onnx(ex, (torch.zeros(1, 3, size, size),), os.path.join(dst, "onnx", "vision_encoder.onnx"),
                      ["pixel_values"], ["image_features"],
                      {"pixel_values": {0: "batch_size"}, "image_features": {0: "batch_size"}},
                      ["batch_size", n_tok, vcfg.v_hidden])

    conf = {
        "fastcache_random_weights": True,
        "architectures": ["LlavaForConditionalGeneration"],
        "model_type": "llava",
        "ignore_index": -100,
        "image_token_index": IMAGE_TOKEN_ID,
        "image_seq_length": n_tok,
        "projector_hidden_act": "gelu",
        "multimodal_projector_bias": True,
        "vision_feature_layer": -1,
        "vision_feature_select_strategy": "full",
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "text_config": {
            "model_type": "qwen2",
            "architectures": ["Qwen2ForCausalLM"],
            "vocab_size": VOCAB,
            "hidden_size": d,
            "intermediate_size": inter,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "num_key_value_heads": kv,
            "hidden_act": "silu",
            "max_position_embeddings": 2048,
            "rms_norm_eps": 1e-6,
            "rope_theta": 1000000.0,
            "rope_scaling": None,
            "tie_word_embeddings": False,
            "use_sliding_window": False,
            "attention_dropout": 0.0,
            "bos_token_id": 1,
            "eos_token_id": 49279,
            "torch_dtype": "float32",
        },
        "vision_config": {
            "model_type": "siglip_vision_model",
            "hidden_size": vcfg.v_hidden,
            "intermediate_size": vcfg.v_inter,
            "num_hidden_layers": vcfg.v_layers,
            "num_attention_heads": vcfg.v_heads,
            "num_channels": 3,
            "image_size": size,
            "patch_size": patch,
            "hidden_act": "gelu_pytorch_tanh",
            "layer_norm_eps": vcfg.v_eps,
            "attention_dropout": 0.0,
        },
    }
    write_json(os.path.join(dst, "config.json"), conf)
    mean, std = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
    write_json(os.path.join(dst, "preprocessor_config.json"), {
        "image_processor_type": "CLIPImageProcessor",
        "processor_class": "LlavaProcessor",
        "do_convert_rgb": True,
        "do_resize": True,
        "size": {"shortest_edge": size},
        "resample": 3,
        "do_center_crop": True,
        "crop_size": {"height": size, "width": size},
        "do_rescale": True,
        "rescale_factor": 0.00392156862745098,
        "do_normalize": True,
        "image_mean": mean,
        "image_std": std,
    })
    write_json(os.path.join(dst, "processor_config.json"), {
        "processor_class": "LlavaProcessor", "image_token": "<image>", "patch_size": patch,
        "num_additional_image_tokens": 0, "vision_feature_select_strategy": "full"})
    template = (
        "<|im_start|>{% for message in messages %}"
        "{% if message['role'] == 'system' %}{{ 'SYSTEM: ' }}{% elif message['role'] == 'user' %}{{ 'USER: ' }}"
        "{% else %}{{ 'ASSISTANT: ' }}{% endif %}"
        "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
        "{% for part in message['content'] %}{% if part['type'] == 'image' %}{{ '<image>\n' }}"
        "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
        "{% if message['role'] == 'assistant' %}{{ '<end_of_utterance>' }}{% endif %}{{ ' ' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}")
    write_json(os.path.join(dst, "chat_template.json"), {"chat_template": template})
    tk = json.load(open(os.path.join(REAL, "tokenizer_config.json")))
    tk.update(chat_template=template, processor_class="LlavaProcessor")
    write_json(os.path.join(dst, "tokenizer_config.json"), tk)
    copy_tokenizer(dst)

    img = random_image(size, seed=71)
    save_png(os.path.join(dst, "reference", "image.png"), img)
    x = torch.from_numpy(img.astype(np.float32)).permute(2, 0, 1)[None] / 255.0
    px = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        feats = ex(px)
        projected = proj.linear_2(F.gelu(proj.linear_1(feats)))  # exact erf GELU
    write_f32(os.path.join(dst, "reference", "pixel_values.f32"), px)
    write_f32(os.path.join(dst, "reference", "image_features.f32"), feats)
    write_f32(os.path.join(dst, "reference", "projected_features.f32"), projected)
    write_json(os.path.join(dst, "reference", "meta.json"), {
        "image": "image.png",
        "image_size": [size, size],
        "pixel_values": "pixel_values.f32",
        "pixel_values_shape": list(px.shape),
        "pixel_values_note": "float32 little-endian; (rgb/255 - image_mean) / image_std of image.png, no resize "
                             "(transformers.js 4.3.1's CLIPImageProcessor gives the same within 3e-7)",
        "image_features": "image_features.f32",
        "image_features_shape": list(feats.shape),
        "projected_features": "projected_features.f32",
        "projected_features_shape": list(projected.shape),
        "projected_note": "multi_modal_projector applied in torch: linear_2(gelu_erf(linear_1(image_features)))",
        "tokens_per_image": n_tok,
        "onnx": {"inputs": ["pixel_values"], "outputs": ["image_features"], "opset": OPSET, "ops": ops},
        "image_token_id": IMAGE_TOKEN_ID,
    })
    with open(os.path.join(dst, "README.md"), "w") as f:
        f.write(f"""# tiny-vlm-llava

RANDOM weights, for tests only: the answers are meaningless. Generated by `{SCRIPT}`
(deterministic; do not edit by hand, re-run the script). Seeds 7001-7003.

LLaVA layout (llava-hf naming) with a Qwen2 decoder: hidden {d}, {layers} layers, {heads} heads / {kv} KV heads
(head_dim {d // heads}), q/k/v biases, intermediate {inter}, vocab {VOCAB}, untied lm_head (embed_tokens and lm_head
stored F16, the rest F32). Projector: linear_1 ({vcfg.v_hidden} -> {d}), exact (erf) GELU, linear_2 ({d} -> {d}).
Vision: SigLIP {size} px, patch {patch}, hidden {vcfg.v_hidden}, {vcfg.v_layers} layers; only in ONNX, not in the safetensors.

`onnx/vision_encoder.onnx` (opset {OPSET}): pixel_values f32 [batch_size, 3, {size}, {size}] -> image_features f32
[batch_size, {n_tok}, {vcfg.v_hidden}] = hidden_states[-1] (vision_feature_layer -1, strategy "full"), NOT projected.

`reference/`: image.png, its pixel_values, torch's image_features and projected_features (see meta.json).
Chat template: `<|im_start|>USER: <image>\\nWhat is this? ASSISTANT:`. Tokenizer files: SmolVLM-256M-Instruct's.
""")
    write_manifest(dst)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "public", "models"))
    ap.add_argument("--check", action="store_true", help="regenerate into a temp dir and compare with --out")
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    names = {"tiny-vlm-idefics3": make_idefics3, "tiny-vlm-llava": make_llava}
    if a.check:
        with tempfile.TemporaryDirectory() as tmp:
            for n, fn in names.items():
                fn(os.path.join(tmp, n))
            bad = []
            for n in names:
                for root, _, files in os.walk(os.path.join(tmp, n)):
                    for f in files:
                        p = os.path.join(root, f)
                        q = os.path.join(a.out, n, os.path.relpath(p, os.path.join(tmp, n)))
                        if not os.path.exists(q) or not filecmp.cmp(p, q, shallow=False):
                            bad.append(q)
            print("identical" if not bad else "DIFFERENT: " + ", ".join(bad))
            sys.exit(1 if bad else 0)
    for n, fn in names.items():
        fn(os.path.join(a.out, n))
        print("wrote", os.path.join(a.out, n))


if __name__ == "__main__":
    main()
