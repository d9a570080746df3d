"""Per-type accuracy of a checkpoint on the three test splits (teacher-forced exact match = greedy):

  old    shapes_data's test split (first generation; the shipped testset/ is its items 0..299)
  ood    ood_data.py's out-of-distribution split (PIL ImageDraw, never trained on; testset-ood/)
  drawn  drawn_data.py's test split (the second-generation training distribution, held out)

  /usr/bin/python3 train/evaluate.py --ckpt train/out/shipped/ckpt.pt --old 2100 --ood 420 --drawn 700
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import drawn_data as DD  # noqa: E402
import ood_data as OOD  # noqa: E402
import shapes_data as D  # noqa: E402
import train as T  # noqa: E402
from model import load_vlm  # noqa: E402


def split_items(old, ood, drawn):
    return {"old": [D.get_item("test", i) for i in range(old)],
            "ood": [OOD.get_item(i) for i in range(ood)],
            "drawn": [DD.get_item("test", i) for i in range(drawn)]}


def table(results):
    cols = D.QTYPES
    lines = ["| split | " + " | ".join(cols) + " | mean |", "|---" * (len(cols) + 2) + "|"]
    for name, acc in results.items():
        vals = [acc.get(c, float("nan")) for c in cols]
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in vals) + f" | {sum(vals) / len(vals):.3f} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--old", type=int, default=2100)
    ap.add_argument("--ood", type=int, default=420)
    ap.add_argument("--drawn", type=int, default=700)
    ap.add_argument("--json", default=None, help="also write the figures here")
    a = ap.parse_args()
    torch.set_num_threads(2)
    m, _ = load_vlm(a.ckpt)
    splits = {k: v for k, v in split_items(a.old, a.ood, a.drawn).items() if v}
    tok = T.Tok(os.path.dirname(os.path.abspath(a.ckpt)), [it for v in splits.values() for it in v])
    results = {k: T.fast_eval(m, tok, v) for k, v in splits.items()}
    print(table(results))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(ckpt=a.ckpt, n={k: len(v) for k, v in splits.items()}, accuracy=results), f, indent=1)


if __name__ == "__main__":
    main()
