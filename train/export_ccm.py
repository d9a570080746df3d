"""Export a trained CCM (train/ccm.py) beside the shapes VLM, with PyTorch's references for the engine.

  /usr/bin/python3 train/export_ccm.py --vlm train/out/<run>/ckpt.pt --ccm train/out/ccm/ccm.pt \
      --dst public/models/tiny-vlm-shapes

Writes into dst:
  ccm.safetensors        F32; per layer l: layers.{l}.k.{0,2,4}.{weight,bias} (the key MLP: Linear(factor*hd, hd),
                         Linear(hd, hd), Linear(hd, hd), ReLU between) and layers.{l}.v.* (the value MLP)
  ccm_config.json        factor, the region it was trained on ("image"), the ratio it gives there, shapes
  reference_ccm.json     per CI-subset item (the first 2 of each type of testset/ and testset-ood/): PyTorch's
                         greedy answer ids with the image span compressed after prefill; per-type CCM accuracy
                         on both whole splits; for old-split item 0, reference_ccm_kv.f32 (f32 LE): per layer the
                         image span's K and V [kv_heads][64][head_dim] and the merged K and V [kv_heads][rows][head_dim]
and rewrites manifest.sha256. The old split's pixels are the 128-px PNGs (the engine's pixels, checked equal);
the OOD split's come from the engine's own resize path (scripts/processor-pixels.ts), as in export.py.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ccm as C  # noqa: E402
import ood_data as OOD  # noqa: E402
import shapes_data as D  # noqa: E402
import train as T  # noqa: E402
from export import engine_pixels  # noqa: E402
from manifest import write_manifest  # noqa: E402
from model import IMAGE_TOKEN_ID, END_OF_UTTERANCE_ID, load_vlm  # noqa: E402
from safetensors_write import write_safetensors  # noqa: E402


@torch.no_grad()
def generate_ccm(model, ccm, prompt_ids, px, max_new=64, capture=None):
    """Greedy: the first token from the uncompressed prefill, the rest reading the compressed cache."""
    ids = list(prompt_ids)
    P = len(ids)
    start = ids.index(IMAGE_TOKEN_ID)
    out = []
    for step in range(max_new):
        e = model.embed(torch.tensor([ids]), px)
        if step == 0:
            h = model.model.text_model(e)
            if capture is not None:
                C.forward(model, e, start, P, ccm, capture)
        else:
            h = C.forward(model, e, start, P, ccm)
        nxt = int(model.logits(h[:, -1])[0].argmax())
        out.append(nxt)
        ids.append(nxt)
        if nxt == END_OF_UTTERANCE_ID:
            break
    return out


SECTION = "## Learned KV compressor (CCM)"


def write_readme_section(a, cc, rows, accuracy):
    """Replaces (or appends) the model README's CCM section."""
    path = os.path.join(a.dst, "README.md")
    txt = open(path).read()
    if SECTION in txt:
        txt = txt[:txt.index(SECTION)].rstrip() + "\n"
    info = cc.get("train_info") or {}
    f = cc["factor"]
    table = "\n".join(f"| {k} | {accuracy['old'].get(k, float('nan')):.3f} | {accuracy['ood'].get(k, float('nan')):.3f} |" for k in D.QTYPES)
    txt += f"""
{SECTION}

`ccm.safetensors` + `ccm_config.json`: FastCache's learned compressor for this model's image tokens (the engine's
press `'ccm'`, `compression: {{ press: 'ccm', ratio: {1 - rows / C.N_IMAGE:g}, region: 'image' }}`): per decoder layer, each
group of {f} consecutive image tokens becomes one K row and one V row per KV head through a 3-layer MLP (one for
keys, one for values), so the 64 image tokens take {rows} rows. Trained by distillation (`train/ccm.py`: the VLM
frozen, KL between the compressed and the uncompressed model's answer distributions, compressed after prefill as
the engine does), seed {info.get("seed")}, {info.get("steps")} steps x {info.get("batch")} questions,
{info.get("train_seconds", float("nan")):.0f} s on 2 CPU cores:

```
{info.get("command")}
/usr/bin/python3 train/export_ccm.py --vlm {a.vlm} --ccm {a.ccm} --dst {a.dst}
```

PyTorch exact match with the image tokens compressed by it (the first answer token from the uncompressed
prefill, every later one reading the compressed cache; `reference_ccm.json`, `reference_ccm_kv.f32`):

| type | old split ({a.n} items) | out-of-distribution split ({a.n_ood} items) |
|---|---|---|
{table}
"""
    open(path, "w").write(txt)


def ci_subset(items, per_type=2):
    seen = {}
    for it in items:
        if seen.get(it["qtype"], 0) < per_type:
            seen[it["qtype"]] = seen.get(it["qtype"], 0) + 1
            yield it


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vlm", required=True)
    ap.add_argument("--ccm", required=True)
    ap.add_argument("--dst", default="public/models/tiny-vlm-shapes")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--n-ood", type=int, default=420)
    a = ap.parse_args()
    torch.set_num_threads(2)
    model, _ = load_vlm(a.vlm)
    cc = torch.load(a.ccm, map_location="cpu")
    c = model.cfg
    ccm = C.CCM(c.layers, c.head_dim, cc["factor"])
    ccm.load_state_dict(cc["ccm"])
    ccm.eval()

    tens = {}
    for l in range(c.layers):
        for half, nets in (("k", ccm.ik), ("v", ccm.iv)):
            for idx in (0, 2, 4):
                tens[f"layers.{l}.{half}.{idx}.weight"] = nets[l][idx].weight.detach()
                tens[f"layers.{l}.{half}.{idx}.bias"] = nets[l][idx].bias.detach()
    write_safetensors(os.path.join(a.dst, "ccm.safetensors"), tens)
    rows = ccm.merged_rows(C.N_IMAGE)
    info = dict(cc.get("train_info") or {})
    json.dump(dict(kind="fastcache-ccm", factor=cc["factor"], region="image", image_tokens=C.N_IMAGE, merged_rows=rows,
                   ratio=round(1 - rows / C.N_IMAGE, 6), num_layers=c.layers, num_kv_heads=c.kv_heads, head_dim=c.head_dim,
                   hidden="relu", train=dict(command=info.get("command"), seed=info.get("seed"), steps=info.get("steps"),
                                             train_seconds=info.get("train_seconds"))),
              open(os.path.join(a.dst, "ccm_config.json"), "w"), indent=1)

    old = [D.get_item("test", i) for i in range(a.n)]
    ood = [OOD.get_item(i) for i in range(a.n_ood)]
    opx = engine_pixels(a.dst, os.path.join(a.dst, "testset-ood", "items.json"), a.n_ood, c.image_size)
    tok = T.Tok(os.path.dirname(os.path.abspath(a.ccm)), old + ood)
    pix = {("old", it["index"]): T.pixels(D.render(it["scene"])) for it in old}
    pix.update({("ood", it["index"]): opx[it["index"]] for it in ood})
    accuracy = {
        "old": C.ccm_eval(model, ccm, tok, old, lambda it: pix[("old", it["index"])]),
        "ood": C.ccm_eval(model, ccm, tok, ood, lambda it: pix[("ood", it["index"])]),
    }
    print("CCM accuracy (teacher-forced = greedy)", accuracy)
    refs = []
    for split, items in (("old", old), ("ood", ood)):
        for it in ci_subset(items):
            px = pix[(split, it["index"])][None]
            refs.append(dict(split=split, index=it["index"], type=it["qtype"], question=it["question"],
                             expected=it["answer"], prompt_ids=tok.prompt(it["question"]),
                             greedy_ids=generate_ccm(model, ccm, tok.prompt(it["question"]), px)))
    cap = []
    generate_ccm(model, ccm, tok.prompt(old[0]["question"]), pix[("old", 0)][None], max_new=1, capture=cap)
    # per layer: the image span's K and V (kv_heads x 64 x hd each), then the merged K and V (kv_heads x rows x hd)
    flat = [t[0].numpy().astype("<f4").ravel() for layer in cap for t in layer]
    np.concatenate(flat).tofile(os.path.join(a.dst, "reference_ccm_kv.f32"))
    layout = dict(per_layer=["k_in", "v_in", "k_out", "v_out"], k_in=[c.kv_heads, C.N_IMAGE, c.head_dim],
                  k_out=[c.kv_heads, rows, c.head_dim], dtype="f32 little-endian")
    json.dump(dict(factor=cc["factor"], merged_rows=rows, accuracy_by_type=accuracy, kv_item=dict(split="old", index=0, **layout),
                   items=refs), open(os.path.join(a.dst, "reference_ccm.json"), "w"))
    write_readme_section(a, cc, rows, accuracy)
    write_manifest(a.dst)
    print(f"exported CCM (factor {cc['factor']}, {rows} rows for {C.N_IMAGE} image tokens) to {a.dst}")


if __name__ == "__main__":
    main()
