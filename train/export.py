"""Export a trained checkpoint to public/models/tiny-vlm-shapes/.

  /usr/bin/python3 train/export.py --ckpt train/out/ckpt.pt --dst public/models/tiny-vlm-shapes --n 300

Writes:
  model.safetensors            F32; decoder (model.text_model.*, tied: no lm_head.weight) +
                               connector (model.connector.modality_projection.proj.weight);
                               written by hand (u64 LE header length + JSON header + raw data)
  onnx/vision_encoder.onnx     SigLIP tower, opset 16: pixel_values [B,3,128,128] (normalized
                               (x/255-0.5)/0.5) -> last_hidden_state [B,256,v_hidden] and
                               image_features [B,64,hidden] (= connector applied, for checking)
  config.json                  Idefics3 form (real SmolVLM config with reduced shapes)
  preprocessor_config.json     real one with longest_edge 128, no splitting
  processor_config.json, tokenizer*.json, chat_template.json, ... copied from the real files
  testset/                     test items 0..n-1: PNG + items.json
  reference_answers.json       PyTorch greedy answer ids per test item, match flag, top-20
                               first-step logits; full first-step logits of the first 8 items
                               in reference_first_logits.f32 (little-endian, [8, 49280])
  manifest.sha256
"""
import argparse
import hashlib
import json
import os
import shutil
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shapes_data as D  # noqa: E402
import train as T  # noqa: E402
from model import Cfg, TinyVLM  # noqa: E402

REAL = "/work/shared/models/smolvlm-256m-instruct-files"


def write_safetensors(path, tensors):
    header, off, blobs = {}, 0, []
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name].detach().cpu().numpy().astype("<f4"))
        b = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


class VisionExport(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.v = m.model.vision_model
        self.c = m.model.connector

    def forward(self, pixel_values):
        h = self.v(pixel_values)
        return h, self.c(h)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", default="train/out/ckpt.pt")
    ap.add_argument("--dst", default="public/models/tiny-vlm-shapes")
    ap.add_argument("--n", type=int, default=300)
    a = ap.parse_args()
    torch.set_num_threads(2)
    ck = torch.load(a.ckpt, map_location="cpu")
    cfg = Cfg(**ck["cfg"])
    m = TinyVLM(cfg)
    m.load_state_dict(ck["model"])
    m.eval()
    os.makedirs(os.path.join(a.dst, "onnx"), exist_ok=True)

    sd = m.state_dict()
    tens = {k: v for k, v in sd.items() if k.startswith("model.text_model.") or k.startswith("model.connector.")}
    write_safetensors(os.path.join(a.dst, "model.safetensors"), tens)

    dummy = torch.zeros(1, 3, cfg.image_size, cfg.image_size)
    torch.onnx.export(VisionExport(m), (dummy,), os.path.join(a.dst, "onnx", "vision_encoder.onnx"), opset_version=16,
                      input_names=["pixel_values"], output_names=["last_hidden_state", "image_features"],
                      dynamic_axes={"pixel_values": {0: "batch"}, "last_hidden_state": {0: "batch"},
                                    "image_features": {0: "batch"}})

    conf = json.load(open(os.path.join(REAL, "config.json")))
    tc, vc = conf["text_config"], conf["vision_config"]
    tc.update(hidden_size=cfg.hidden, num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads,
              num_key_value_heads=cfg.kv_heads, head_dim=cfg.head_dim, intermediate_size=cfg.inter,
              vocab_size=cfg.vocab, rope_theta=cfg.rope_theta, rms_norm_eps=cfg.rms_eps,
              max_position_embeddings=cfg.max_pos, tie_word_embeddings=True)
    vc.update(hidden_size=cfg.v_hidden, num_hidden_layers=cfg.v_layers, num_attention_heads=cfg.v_heads,
              intermediate_size=cfg.v_inter, image_size=cfg.image_size, patch_size=cfg.patch_size,
              layer_norm_eps=cfg.v_eps, hidden_act="gelu_pytorch_tanh")
    vc.pop("max_image_size", None)
    conf.update(scale_factor=cfg.scale_factor, tie_word_embeddings=True,
                _comment="tiny-vlm-shapes: trained on the synthetic shapes task (train/), Idefics3 layout, reduced shapes")
    json.dump(conf, open(os.path.join(a.dst, "config.json"), "w"), indent=2)
    pp = json.load(open(os.path.join(REAL, "preprocessor_config.json")))
    pp.update(max_image_size={"longest_edge": cfg.image_size}, size={"longest_edge": cfg.image_size},
              do_image_splitting=False)
    json.dump(pp, open(os.path.join(a.dst, "preprocessor_config.json"), "w"), indent=2)
    for fn in ["processor_config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.json",
               "special_tokens_map.json", "added_tokens.json", "vocab.json", "merges.txt", "generation_config.json"]:
        shutil.copyfile(os.path.join(REAL, fn), os.path.join(a.dst, fn))

    tdir = os.path.join(a.dst, "testset")
    D.write_testset(tdir, a.n)
    items = [D.get_item("test", i) for i in range(a.n)]
    tok = T.Tok(os.path.dirname(a.ckpt), items)
    acc, det = T.evaluate(m, tok, items, return_details=True)
    refs, full = [], []
    for it, d in zip(items, det):
        top = torch.topk(d["first"], 20)
        refs.append(dict(index=it["index"], type=it["qtype"], question=it["question"], expected=it["answer"],
                         prompt_ids=tok.prompt(it["question"]), expected_ids=tok.answer(it["answer"]),
                         greedy_ids=d["out"], match=bool(d["ok"]),
                         first_top20_ids=top.indices.tolist(), first_top20_logits=[round(float(x), 5) for x in top.values]))
        if len(full) < 8:
            full.append(d["first"].numpy().astype("<f4"))
    with torch.no_grad():
        f0 = m.image_features(T.pixels(D.render(items[0]["scene"]))[None])
    json.dump(dict(accuracy_by_type=acc, n=a.n, image_features_item0_sum=float(f0.sum()),
                   image_features_item0_first8=[float(x) for x in f0[0, 0, :8]], items=refs),
              open(os.path.join(a.dst, "reference_answers.json"), "w"))
    cdir = os.path.join(a.dst, ".check")  # inputs for train/check_onnx.mjs (removed by hand if unwanted)
    os.makedirs(cdir, exist_ok=True)
    px0 = T.pixels(D.render(items[0]["scene"]))[None]
    px0.numpy().astype("<f4").tofile(os.path.join(cdir, "pixel_values.f32"))
    f0.numpy().astype("<f4").tofile(os.path.join(cdir, "image_features.f32"))
    json.dump(dict(pixel_shape=list(px0.shape), features_shape=list(f0.shape)), open(os.path.join(cdir, "meta.json"), "w"))
    np.stack(full).tofile(os.path.join(a.dst, "reference_first_logits.f32"))
    print("accuracy", acc)

    lines = []
    for root, _, files in os.walk(a.dst):
        for fn in sorted(files):
            p = os.path.join(root, fn)
            rel = os.path.relpath(p, a.dst)
            if rel == "manifest.sha256":
                continue
            lines.append(f"{hashlib.sha256(open(p, 'rb').read()).hexdigest()}  {rel}")
    open(os.path.join(a.dst, "manifest.sha256"), "w").write("\n".join(sorted(lines, key=lambda l: l[66:])) + "\n")
    print("exported to", a.dst)


if __name__ == "__main__":
    main()
