"""Rebuild a training checkpoint from a shipped tiny-vlm-shapes folder (model.safetensors holds the
decoder + connector, onnx/vision_encoder.onnx the vision tower), so a continuation run can start from
the shipped weights without the original train/out (which is not kept in the repo).

  /usr/bin/python3 train/import_shipped.py --src public/models/tiny-vlm-shapes --out train/out/shipped/ckpt.pt

The vision weights are the ONNX initializers: named ones keep the module's names ("v." = the vision
model); MatMul weights were renamed by the exporter, so each is matched to the Linear whose bias is
added to its output (transposed back to [out, in]). Every parameter of the model must be found and
have its shape. Checked: the rebuilt checkpoint reproduces the model README's accuracy on the shipped
300-item test set exactly (train.fast_eval: shape 1.000 colour .977 count .930 position .977 ...).
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import Cfg, TinyVLM  # noqa: E402
from safetensors_read import read_safetensors  # noqa: E402

def read_tensors(path):
    return {k: torch.from_numpy(v) for k, v in read_safetensors(path).items()}


def onnx_vision(path):
    import onnx
    from onnx import numpy_helper
    g = onnx.load(path).graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    consumers = {}
    for node in g.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
    out = {}
    for name, arr in inits.items():
        if name.startswith("v."):
            out["model.vision_model." + name[2:]] = torch.from_numpy(arr.copy())
    for node in g.node:
        if node.op_type != "MatMul" or node.input[1] not in inits or node.input[1].startswith("v."):
            continue
        bias = [i for c in consumers.get(node.output[0], []) if c.op_type == "Add" for i in c.input if i.startswith("v.")]
        if bias:
            out["model.vision_model." + bias[0][2:-len("bias")] + "weight"] = torch.from_numpy(inits[node.input[1]].T.copy())
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", default="public/models/tiny-vlm-shapes")
    ap.add_argument("--out", default="train/out/shipped/ckpt.pt")
    ap.add_argument("--ccm-out", help="also rebuild train/ccm.py's checkpoint from ccm.safetensors + ccm_config.json here")
    a = ap.parse_args()
    conf = json.load(open(os.path.join(a.src, "config.json")))
    tc, vc = conf["text_config"], conf["vision_config"]
    sd = read_tensors(os.path.join(a.src, "model.safetensors"))
    sd.update(onnx_vision(os.path.join(a.src, "onnx", "vision_encoder.onnx")))
    stem = sorted({k.split(".")[4] for k in sd if ".embeddings.stem." in k}, key=int)
    # stem: log2(patch) stride-2 convs then v_stem_extra stride-1 convs, with an activation between (index step 2)
    n_stride = int(np.log2(vc["patch_size"]))
    first = sd["model.vision_model.embeddings.stem.0.weight"]
    cfg = Cfg(v_hidden=vc["hidden_size"], v_layers=vc["num_hidden_layers"], v_heads=vc["num_attention_heads"],
              v_inter=vc["intermediate_size"], v_stem=first.shape[0], v_stem_extra=len(stem) - n_stride,
              hidden=tc["hidden_size"], layers=tc["num_hidden_layers"], heads=tc["num_attention_heads"],
              kv_heads=tc["num_key_value_heads"], inter=tc["intermediate_size"], vocab=tc["vocab_size"])
    m = TinyVLM(cfg)
    own = m.state_dict()
    missing = sorted(set(own) - set(sd))
    extra = sorted(set(sd) - set(own))
    assert not missing and not extra, f"missing {missing[:8]} extra {extra[:8]}"
    for k in own:
        assert own[k].shape == sd[k].shape, (k, own[k].shape, sd[k].shape)
    m.load_state_dict(sd)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    torch.save(dict(model=m.state_dict(), cfg=cfg.to_dict(), step=0, seed=None,
                    train_info=dict(imported_from=os.path.abspath(a.src))), a.out)
    print(f"cfg {cfg.to_dict()}\nwrote {a.out} ({len(sd)} tensors)")
    if a.ccm_out:
        import_ccm(a.src, cfg, a.ccm_out)


def import_ccm(src, cfg, out):
    """ccm.safetensors (export_ccm.py's names: layers.L.{k,v}.{0,2,4}.{weight,bias}) -> ccm.py's checkpoint."""
    import ccm as C
    conf = json.load(open(os.path.join(src, "ccm_config.json")))
    net = C.CCM(cfg.layers, cfg.head_dim, conf["factor"])
    sd = {}
    for k, v in read_tensors(os.path.join(src, "ccm.safetensors")).items():
        layer, half, rest = k.split(".")[1], k.split(".")[2], ".".join(k.split(".")[3:])
        sd[f"{'ik' if half == 'k' else 'iv'}.{layer}.{rest}"] = v
    net.load_state_dict(sd)  # strict: every parameter found, shapes checked
    os.makedirs(os.path.dirname(out), exist_ok=True)
    torch.save(dict(ccm=net.state_dict(), factor=conf["factor"], layers=cfg.layers, head_dim=cfg.head_dim,
                    train_info=conf.get("train")), out)
    print(f"wrote {out} (CCM factor {conf['factor']})")


if __name__ == "__main__":
    main()
