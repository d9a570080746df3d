"""Export a trained checkpoint to public/models/tiny-vlm-shapes/.

  /usr/bin/python3 train/export.py --ckpt train/out/ckpt.pt --dst public/models/tiny-vlm-shapes --n 300

Writes:
  model.safetensors            F32; decoder (model.text_model.*, tied: no lm_head.weight) +
                               connector (model.connector.modality_projection.proj.weight);
                               written by hand (u64 LE header length + JSON header + raw data)
  onnx/vision_encoder.onnx     SigLIP tower + connector, opset 17, the real SmolVLM signature:
                               pixel_values [batch_size,num_images,3,128,128] f32 (normalized
                               (x/255-0.5)/0.5), pixel_attention_mask [batch_size,num_images,128,128]
                               bool (accepted, no effect) -> image_features [batch_size*num_images,64,hidden]
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
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import drawn_data as DD  # noqa: E402
import ood_data as OOD  # noqa: E402
import shapes_data as D  # noqa: E402
import train as T  # noqa: E402
from model import load_vlm  # noqa: E402
from safetensors_write import write_safetensors  # noqa: E402
from manifest import write_manifest  # noqa: E402

REAL = "/work/shared/models/smolvlm-256m-instruct-files"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class VisionExport(torch.nn.Module):
    """The real SmolVLM / transformers.js vision_encoder signature:
    pixel_values [batch_size, num_images, 3, H, W] f32, pixel_attention_mask [batch_size, num_images, H, W]
    bool -> image_features [batch_size*num_images, 64, hidden] (connector applied).
    The mask is accepted but does not change the result (every image is a full 128x128 image, no
    padding): it is used trivially (+ 0 * any(mask)) so that it stays a graph input."""

    def __init__(self, m):
        super().__init__()
        self.v = m.model.vision_model
        self.c = m.model.connector

    def forward(self, pixel_values, pixel_attention_mask):
        s = pixel_values.shape
        px = pixel_values.reshape(-1, s[2], s[3], s[4])
        f = self.c(self.v(px))
        keep = pixel_attention_mask.any().to(f.dtype)
        return f + 0.0 * keep


def reference_answers(m, tok, items, pixels_of=None):
    """PyTorch greedy answers of items (reference_answers*.json entries), per-type accuracy, and the
    full first-step logits of the first 8 items."""
    acc, det = T.evaluate(m, tok, items, return_details=True, pixels_of=pixels_of)
    refs, full = [], []
    for it, d in zip(items, det):
        top = torch.topk(d["first"], 20)
        refs.append(dict(index=it["index"], type=it["qtype"], question=it["question"], expected=it["answer"],
                         prompt_ids=tok.prompt(it["question"]), expected_ids=tok.answer(it["answer"]),
                         greedy_ids=d["out"], match=bool(d["ok"]),
                         first_top20_ids=top.indices.tolist(), first_top20_logits=[round(float(x), 5) for x in top.values]))
        if len(full) < 8:
            full.append(d["first"].numpy().astype("<f4"))
    return acc, refs, full


def engine_pixels(dst, items_json, n, size):
    """The engine's pixel values for a split's images (scripts/processor-pixels.ts: sharp decode, the transformers.js processor, the engine's Pillow resize)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "pixels.f32")
        subprocess.run(["npx", "tsx", os.path.join(REPO, "scripts", "processor-pixels.ts"), dst, items_json, out],
                       check=True, cwd=REPO)
        px = np.fromfile(out, dtype="<f4").reshape(n, 3, size, size)
    return torch.from_numpy(px.copy())


# The first-generation model (v2lm7, shipped 2026-11-23) on the 2100 old-split items (teacher-forced): the
# second generation must keep >= .95 of each (issue "The shapes VLM, second generation").
PREVIOUS_COMMIT = "27d698b"  # the last commit holding the first-generation model (v2lm7)
PREVIOUS_OLD_2100 = dict(shape=.997, colour=.987, count=.957, position=.967, relation=.973, yesno=.987, describe=.500)
PREVIOUS_OOD_420 = dict(shape=.183, colour=.167, count=.117, position=.183, relation=.533, yesno=.417, describe=.033)


def write_readme(a, ck, cfg, m, acc, accb, items, wide, gen2):
    info = dict(ck.get("train_info") or {})
    res = os.path.join(os.path.dirname(a.ckpt), "results.json")
    if not info and os.path.exists(res):
        info = json.load(open(res))
    import re
    cmd = info.get("command", "")
    for key, flag in (("q_per_image", "--q-per-image"), ("aux_batch", "--aux-batch")):
        mt = re.search(flag + r" (\d+)", cmd)
        if key not in info and mt:
            info[key] = int(mt.group(1))
    if cmd and not cmd.startswith("nice"):
        info["command"] = "nice -n 10 " + cmd
    chain, p = [], info.get("previous")  # continuation runs: --init from an earlier run's checkpoint
    while p:
        chain.insert(0, p)
        p = p.get("previous")
    # a stage whose vision tower came from a separate (aux-only) run (--init-vision): that run is a stage too
    for k in range(len(chain), -1, -1):
        vf = (chain[k] if k < len(chain) else info).get("vision_from")
        if vf:
            chain.insert(k, vf)
    stages = ""
    for p in chain:
        if "imported_from" in p:  # a continuation of the previous shipped model (train/import_shipped.py)
            # the previous shipped model, from git history (its own stages: train/train.py's docstring)
            stages += (f"git archive {PREVIOUS_COMMIT} public/models/tiny-vlm-shapes | tar -x -C /tmp/previous-model\n"
                       "/usr/bin/python3 train/import_shipped.py --src /tmp/previous-model/public/models/tiny-vlm-shapes "
                       "--out train/out/shipped/ckpt.pt\n")
            continue
        pc = p.get("command", "")
        stages += ("nice -n 10 " + pc if pc and not pc.startswith("nice") else pc) + "\n"
        info["train_seconds"] = info.get("train_seconds", 0) + p.get("train_seconds", 0)
    warm = any("imported_from" in p for p in chain)
    chain = [p for p in chain if "imported_from" not in p]
    prev = chain[0] if chain else None
    if prev:
        prev = dict(prev, steps=" + ".join(str(p.get("steps")) for p in chain))
        info["aux_steps"] = sum(p.get("aux_steps", 0) for p in chain) + info.get("aux_steps", 0)
        info["aux_batch"] = next((p["aux_batch"] for p in chain if p.get("aux_steps") and "aux_batch" in p),
                                 chain[0].get("aux_batch", 32))
    n_by = {}
    for it in items:
        n_by[it["qtype"]] = n_by.get(it["qtype"], 0) + 1
    chance = dict(shape="1/4", colour="1/6", count="1/5", position="1/9", relation="1/2", yesno="1/2", describe="~0")
    wacc, waccb = wide
    nw = a.n_wide // len(D.QTYPES)
    bound = dict(shape=.90, colour=.90, count=.90, position=.80, relation=.80, yesno=.80, describe=.70)
    wacc0 = wide[0]
    rows2 = "\n".join(f"| {k} | {gen2['ood'].get(k, float('nan')):.3f} | {PREVIOUS_OOD_420[k]:.3f} | {gen2['drawn'].get(k, float('nan')):.3f} | "
                      f"{bound[k]:.2f} | {wacc0.get(k, float('nan')):.3f} | {PREVIOUS_OLD_2100[k]:.3f} | {.95 * PREVIOUS_OLD_2100[k]:.3f} |"
                      for k in D.QTYPES)
    rows = "\n".join(f"| {k} | {acc.get(k, float('nan')):.3f} | {accb.get(k, float('nan')):.3f} | {wacc.get(k, float('nan')):.3f} | "
                     f"{waccb.get(k, float('nan')):.3f} | {chance[k]} |" for k in D.QTYPES)
    overall = sum(acc[k] * n_by[k] for k in acc) / sum(n_by[k] for k in acc)
    nvis = sum(p.numel() for p in m.model.vision_model.parameters())
    ntext = sum(p.numel() for p in m.model.text_model.parameters())
    nconn = sum(p.numel() for p in m.model.connector.parameters())
    stem_note = (f" whose patchify convolution is replaced by a convolutional stem ({int(math.log2(cfg.patch_size))} stride-2 "
                 f"3x3 convolutions from {cfg.v_stem} channels, then {cfg.v_stem_extra} stride-1 ones, GELU between)") if cfg.v_stem else ""
    txt = f"""# tiny-vlm-shapes

A tiny vision-language model in the **Idefics3 / SmolVLM layout**, trained from scratch with PyTorch on a
synthetic, deterministic "shapes and colours" VQA task: pictures with 1-4 circles/squares/triangles/stars in 6
colours, each in its own cell of a 3x3 grid; questions about shape, colour, count, position, left/right and
above/below relations, yes/no, and a two-sentence description naming every object's colour, shape and place.
The second generation (this one) is trained on pictures as people draw them (`train/drawn_data.py`: white,
black, flat, gradient and noisy grounds; 64-1024 px, square and 1:2..2:1; filled and outlined, thin and thick
strokes, anti-aliased and hard-edged; small to frame-filling objects; colours varied around each name; mild
blur and JPEG), resized by the processor as the runtime does, and tested on a split drawn by another
renderer that it never saw (`testset-ood/`, PIL ImageDraw with paint-program colours). It is the project's
offline default model: its answers can be checked exactly, and `reference_answers.json` /
`reference_answers_ood.json` hold PyTorch's greedy answers and first-step logits for every test item, so the
browser engine can be compared token for token.

It uses the **real SmolVLM-256M-Instruct tokenizer, chat template and processor files** (copied verbatim,
except `preprocessor_config.json`: longest edge 128, no image splitting), so a prompt is the real model's
prompt: one image = `<fake_token_around_image><global-img>` + 64 x `<image>` + `<fake_token_around_image>`.

## Files

- `model.safetensors` (F32): decoder `model.text_model.*` (Llama, GQA, RoPE, tied embeddings, no
  `lm_head.weight`) + connector `model.connector.modality_projection.proj.weight` (pixel shuffle x{cfg.scale_factor}, no bias).
- `onnx/vision_encoder.onnx` (opset 17): SigLIP-style ViT{stem_note} + connector. Inputs `pixel_values` f32
  [batch_size, num_images, 3, {cfg.image_size}, {cfg.image_size}] (normalized `(x/255-0.5)/0.5`) and `pixel_attention_mask` bool
  [batch_size, num_images, {cfg.image_size}, {cfg.image_size}] (accepted, no effect); output `image_features` f32
  [batch_size*num_images, 64, {cfg.hidden}].
- `config.json`, `preprocessor_config.json`, `processor_config.json`, tokenizer files, `chat_template.json`,
  `generation_config.json`.
- `testset/`: {len(items)} held-out test items of the first generation's split (`test_NNNN.png`, 128x128, dark
  grey plain or noisy ground, + `items.json` with question, answer, type and the full prompt text).
- `testset-ood/`: {a.n_ood} out-of-distribution test items (`ood_NNNN.png`, 200x200 to 1024x768, never trained on;
  `train/ood_data.py`), same `items.json` schema plus width and height.
- `reference_answers.json`: per test item the prompt ids, expected answer (text and ids), PyTorch greedy answer
  ids (no KV cache, full vocabulary), match flag, first-step top-20 ids and logits;
  `reference_first_logits.f32`: full first-step logits of items 0-7 (little-endian f32, [8, {cfg.vocab}]).
  `reference_answers_ood.json`: the same for `testset-ood/`, computed on the engine's own pixel values
  (`scripts/processor-pixels.ts`: sharp decode + the transformers.js processor, which resizes with the engine's
  port of Pillow, `src/model/image-resample.ts`; equal to training's Pillow pixels within 2e-7).
- `manifest.sha256`: sha256 of every file above (checked in CI by `src/model/shipped-manifest.node.test.ts`).

## Sizes

Vision{" (conv stem, " + str(cfg.v_stem) + " channels, + " + str(cfg.v_stem_extra) + " stride-1 convs)" if cfg.v_stem else ""} {cfg.v_layers} layers x {cfg.v_hidden} wide ({cfg.v_heads} heads, MLP {cfg.v_inter}, patch {cfg.patch_size}, {cfg.image_size}px -> {(cfg.image_size // cfg.patch_size) ** 2} patches -> 64 image
tokens); decoder {cfg.layers} layers x {cfg.hidden} wide ({cfg.heads} query heads, {cfg.kv_heads} KV heads, head dim {cfg.head_dim}, MLP {cfg.inter}),
vocabulary {cfg.vocab}. Parameters: vision {nvis:,}, connector {nconn:,}, decoder {ntext:,} (of which
embeddings {cfg.vocab * cfg.hidden:,}).

## Training

Reproduce (Debian `python3-torch` 1.13 CPU, from the repo root; data is a pure function of (split, index)):

```
{stages}{info.get("command", "(see train/train.py)")}
/usr/bin/python3 train/export.py --ckpt {a.ckpt} --dst {a.dst} --n {a.n}
```

Seed {info.get("seed", "?")}; {info.get("aux_steps", 0)} vision pre-training steps (auxiliary heads, batch {info.get("aux_batch", 32)} images)
then {(str(prev.get("steps")) + " + ") if prev else ""}{info.get("steps", "?")} steps x batch {info.get("batch", "?")} questions ({info.get("q_per_image", 1)} per image); training wall time
{info.get("train_seconds", float("nan")):.0f} s{" (all stages" + (", starting from the previous model's weights)" if warm else ")") if prev else ""} on 2 shared CPU cores (nice 10, other work running). The method, the pilots and
what failed are described in `train/train.py`'s docstring.

"Blank image": the same questions with an all-zero (mid-grey) `pixel_values`, computed by teacher forcing
(identical to greedy exact match): where it drops, the answer comes from the image.

## Held-out accuracy (PyTorch, greedy, exact match of the whole answer)

| type | accuracy, shipped test set ({len(items)} items, ~{len(items) // len(D.QTYPES)} per type) | same, blank image | accuracy, {a.n_wide} test items ({nw} per type) | same, blank image | uniform chance |
|---|---|---|---|---|---|
{rows}

Overall (item-weighted): {overall:.3f} on the {len(items)} shipped test items; {sum(wacc.values()) / len(wacc):.3f} on {a.n_wide}.
The {a.n_wide}-item columns (test items 0..{a.n_wide - 1}, teacher-forced) say how much of the small set's
per-type figures is noise (43 items: about +-.07).

## Pictures as people draw them (PyTorch, exact match)

| type | out-of-distribution split ({a.n_ood} items, greedy on the engine's pixels) | previous model, same items | drawn split ({a.n_drawn} held-out items, teacher-forced) | issue's bound (OOD) | old split, 2100 items: this model | previous model | .95 x previous |
|---|---|---|---|---|---|---|---|
{rows2}

The previous model's OOD column was computed with `train/evaluate.py` (Python resize of the same images).

The blank-image column is the answer prior the decoder learned (e.g. count: "1" and "0" dominate the
per-shape/per-colour count questions). Where accuracy is not clearly above it, that type is not yet solved
from the image.

The weakest type is still the description, where one wrong word anywhere in two sentences fails the exact
match. The first generation (same architecture, trained on one style of picture) answered the
out-of-distribution split at {sum(PREVIOUS_OOD_420.values()) / len(PREVIOUS_OOD_420):.3f} on average: it had learned
its generator, not shapes; the second generation's data (above) is what changed.
"""
    open(os.path.join(a.dst, "README.md"), "w").write(txt)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", default="train/out/ckpt.pt")
    ap.add_argument("--dst", default="public/models/tiny-vlm-shapes")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--n-ood", type=int, default=420, help="items of the out-of-distribution split (testset-ood/)")
    ap.add_argument("--n-drawn", type=int, default=700, help="held-out items of the drawn (training-distribution) split")
    ap.add_argument("--n-wide", type=int, default=2100, help="test items of the README's second accuracy column")
    ap.add_argument("--check-dir", default="train/out/onnx_check")
    a = ap.parse_args()
    torch.set_num_threads(2)
    m, ck = load_vlm(a.ckpt)
    cfg = m.cfg
    os.makedirs(os.path.join(a.dst, "onnx"), exist_ok=True)

    sd = m.state_dict()
    tens = {k: v for k, v in sd.items() if k.startswith("model.text_model.") or k.startswith("model.connector.")}
    write_safetensors(os.path.join(a.dst, "model.safetensors"), tens)

    S = cfg.image_size
    dummy = (torch.zeros(1, 1, 3, S, S), torch.ones(1, 1, S, S, dtype=torch.bool))
    onnx_path = os.path.join(a.dst, "onnx", "vision_encoder.onnx")
    torch.onnx.export(VisionExport(m), dummy, onnx_path, opset_version=17,
                      input_names=["pixel_values", "pixel_attention_mask"], output_names=["image_features"],
                      dynamic_axes={"pixel_values": {0: "batch_size", 1: "num_images"},
                                    "pixel_attention_mask": {0: "batch_size", 1: "num_images"},
                                    "image_features": {0: "batch_size*num_images"}})
    import onnx  # noqa: E402
    g = onnx.load(onnx_path).graph
    assert [i.name for i in g.input] == ["pixel_values", "pixel_attention_mask"], [i.name for i in g.input]
    assert [o.name for o in g.output] == ["image_features"], [o.name for o in g.output]

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
    acc, refs, full = reference_answers(m, tok, items)
    with torch.no_grad():
        f0 = m.image_features(T.pixels(D.render(items[0]["scene"]))[None])
    json.dump(dict(accuracy_by_type=acc, n=a.n, image_features_item0_sum=float(f0.sum()),
                   image_features_item0_first8=[float(x) for x in f0[0, 0, :8]], items=refs),
              open(os.path.join(a.dst, "reference_answers.json"), "w"))
    # the out-of-distribution split: PyTorch answers on the engine's own pixels (its resize path)
    odir = os.path.join(a.dst, "testset-ood")
    OOD.write_split(odir, a.n_ood)
    ood_items = [OOD.get_item(i) for i in range(a.n_ood)]
    opx = engine_pixels(a.dst, os.path.join(odir, "items.json"), a.n_ood, cfg.image_size)
    otok = T.Tok(os.path.dirname(a.ckpt), ood_items)
    acc_ood, orefs, _ = reference_answers(m, otok, ood_items, lambda i, it: opx[i])
    json.dump(dict(accuracy_by_type=acc_ood, n=a.n_ood, split="ood", items=orefs),
              open(os.path.join(a.dst, "reference_answers_ood.json"), "w"))
    print("accuracy, out-of-distribution split", acc_ood)
    # inputs for train/check_onnx.mjs (kept out of the shipped folder): items 0..2 as batch 1 x 3 images
    cdir = a.check_dir
    os.makedirs(cdir, exist_ok=True)
    px3 = torch.stack([T.pixels(D.render(items[i]["scene"])) for i in range(3)])
    with torch.no_grad():
        f3 = m.image_features(px3)
    px3[None].numpy().astype("<f4").tofile(os.path.join(cdir, "pixel_values.f32"))
    f3.numpy().astype("<f4").tofile(os.path.join(cdir, "image_features.f32"))
    json.dump(dict(pixel_shape=[1] + list(px3.shape), features_shape=list(f3.shape)), open(os.path.join(cdir, "meta.json"), "w"))
    stale = os.path.join(a.dst, ".check")
    if os.path.isdir(stale):
        shutil.rmtree(stale)
    np.stack(full).tofile(os.path.join(a.dst, "reference_first_logits.f32"))
    print("accuracy", acc)
    accb = T.fast_eval(m, tok, items, blank=True)
    print("accuracy with a blank (mid-grey) image", accb)
    wide_items = [D.get_item("test", i) for i in range(a.n_wide)]
    wtok = T.Tok(os.path.dirname(a.ckpt), wide_items)
    wide = (T.fast_eval(m, wtok, wide_items), T.fast_eval(m, wtok, wide_items, blank=True))
    print(f"accuracy on {a.n_wide} test items (teacher-forced)", wide[0])
    drawn_items = [DD.get_item("test", i) for i in range(a.n_drawn)]
    dtok = T.Tok(os.path.dirname(a.ckpt), drawn_items)
    acc_drawn = T.fast_eval(m, dtok, drawn_items)
    print(f"accuracy on {a.n_drawn} drawn test items (teacher-forced)", acc_drawn)
    write_readme(a, ck, cfg, m, acc, accb, items, wide, dict(ood=acc_ood, drawn=acc_drawn))

    write_manifest(a.dst)
    print("exported to", a.dst)


if __name__ == "__main__":
    main()
