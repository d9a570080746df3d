"""The out-of-distribution test split of the shapes VLM: pictures as a paint program makes them.

Never trained on. Drawn by PIL's ImageDraw (the training data's renderer is drawn_data.py's signed
distances), with its own colour values (CSS / paint-program primaries: red is 255,0,0 here, 220,35,35
there), its own canvas sizes (the sizes people save: 256 x 256, 640 x 480, ...), its own grounds (mostly
white, as people draw) and its own placement code: an object's box is chosen inside its 3x3 cell with a
margin, rather than a centre jittered in the cell. The questions and answers are shapes_data's
(make_qa / describe), so the model's vocabulary is the same; every object is in its own cell with its
centre well inside it, so the position answers stay checkable.

Usage (from the repo root; Debian's python with PIL):
  /usr/bin/python3 train/ood_data.py --out public/models/tiny-vlm-shapes/testset-ood --n 420
writes ood_0000.png .. and items.json (the same schema as testset/items.json, plus width, height and the
ground's RGB as background).
"""
import argparse
import io
import json
import math
import os
import random

from PIL import Image, ImageDraw

import shapes_data as D
from manifest import write_manifest

SEED = 424_242_421
# paint-program colour values, one to three per name
PALETTE = {
    "red": [(255, 0, 0), (237, 28, 36), (200, 16, 46)],
    "green": [(0, 176, 80), (34, 177, 76), (0, 200, 0)],
    "blue": [(0, 0, 255), (0, 112, 192), (63, 72, 204)],
    "yellow": [(255, 255, 0), (255, 242, 0), (255, 215, 0)],
    "purple": [(128, 0, 128), (163, 73, 164), (112, 48, 160)],
    "orange": [(255, 165, 0), (255, 127, 39), (255, 140, 0)],
}
CANVASES = [(256, 256), (512, 512), (300, 300), (640, 480), (480, 640), (400, 300), (800, 600), (200, 200),
            (1024, 768), (350, 250)]
GROUNDS = [((255, 255, 255), 8), ((250, 250, 245), 2), ((230, 230, 230), 1), ((0, 0, 0), 1), ((255, 248, 220), 1),
           ((200, 225, 255), 1)]


def sample_scene(rng):
    w, h = rng.choice(CANVASES)
    ground = rng.choices([g for g, _ in GROUNDS], [k for _, k in GROUNDS])[0]
    n = rng.choice([1, 1, 2, 2, 3, 3, 4])
    cells, combos = D.cells_and_kinds(rng, n)
    cw, ch = w / 3, h / 3
    objs = []
    for cell, (shape, colour) in zip(cells, combos):
        r, c = divmod(cell, 3)
        # a square box inside the cell, 45-85 % of its short side, its centre in the middle 40 %
        side = rng.uniform(0.45, 0.85) * min(cw, ch)
        if n == 1 and rng.random() < 0.5:  # a lone object may be drawn big, centred in the picture
            r, c, side = 1, 1, rng.uniform(0.5, 0.8) * min(w, h)
        mx, my = max(0.0, min(0.2 * cw, (cw - side) / 2)), max(0.0, min(0.2 * ch, (ch - side) / 2))
        cx = (c + 0.5) * cw + rng.uniform(-mx, mx)
        cy = (r + 0.5) * ch + rng.uniform(-my, my)
        objs.append(dict(shape=shape, colour=colour, row=r, col=c, x=cx, y=cy, side=side,
                         rgb=rng.choice(PALETTE[colour])))
    objs.sort(key=lambda o: (o["row"], o["col"]))
    style = dict(outline=rng.random() < 0.25, width=rng.choice([2, 3, 5, 8]), smooth=rng.random() < 0.5)
    return dict(kind="ood", width=w, height=h, objects=objs, background=dict(noisy=False, rgb=ground), style=style)


def draw(scene):
    """PIL image of a scene; `smooth` draws at 4x and downsamples (anti-aliasing), else hard edges."""
    k = 4 if scene["style"]["smooth"] else 1
    w, h = scene["width"] * k, scene["height"] * k
    im = Image.new("RGB", (w, h), scene["background"]["rgb"])
    d = ImageDraw.Draw(im)
    outline, width = scene["style"]["outline"], scene["style"]["width"] * k
    for o in scene["objects"]:
        cx, cy, r = o["x"] * k, o["y"] * k, o["side"] * k / 2
        paint = dict(outline=o["rgb"], width=width) if outline else dict(fill=o["rgb"])
        if o["shape"] == "circle":
            d.ellipse([cx - r, cy - r, cx + r, cy + r], **paint)
        elif o["shape"] == "square":
            d.rectangle([cx - r * 0.85, cy - r * 0.85, cx + r * 0.85, cy + r * 0.85], **paint)
        elif o["shape"] == "triangle":
            pts = [(cx, cy - r), (cx + r, cy + r * 0.8), (cx - r, cy + r * 0.8)]
            d.polygon(pts, **paint) if not outline else d.line(pts + [pts[0]], fill=o["rgb"], width=width, joint="curve")
        else:
            pts = [(cx + (r if j % 2 == 0 else r * 0.4) * math.sin(j * math.pi / 5),
                    cy - (r if j % 2 == 0 else r * 0.4) * math.cos(j * math.pi / 5)) for j in range(10)]
            d.polygon(pts, **paint) if not outline else d.line(pts + [pts[0]], fill=o["rgb"], width=width, joint="curve")
    if k > 1:
        im = im.resize((scene["width"], scene["height"]), Image.LANCZOS)
    return im


def get_item(index):
    rng = random.Random(SEED * 1_000_003 + index)
    scene = sample_scene(rng)
    qtype = D.QTYPES[index % len(D.QTYPES)]
    q, a = D.make_qa(scene, qtype, rng)
    return dict(split="ood", index=index, qtype=qtype, question=q, answer=a, scene=scene)


def write_split(out_dir, n):
    os.makedirs(out_dir, exist_ok=True)
    items = []
    for i in range(n):
        it = get_item(i)
        fn = f"ood_{i:04d}.png"
        buf = io.BytesIO()
        draw(it["scene"]).save(buf, format="PNG", optimize=True)
        with open(os.path.join(out_dir, fn), "wb") as f:
            f.write(buf.getvalue())
        items.append(dict(index=i, image=fn, width=it["scene"]["width"], height=it["scene"]["height"],
                          background=list(it["scene"]["background"]["rgb"]),
                          type=it["qtype"], question=it["question"], answer=it["answer"],
                          messages=[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": it["question"]}]}],
                          prompt=D.chat_prompt(it["question"])))
    with open(os.path.join(out_dir, "items.json"), "w") as f:
        json.dump(dict(note="out-of-distribution split (train/ood_data.py, PIL ImageDraw): never trained on; "
                            "images of several sizes, resized by the processor; prompt = chat template + <image> expansion",
                       items=items), f, indent=1)
    print(f"wrote {n} items to {out_dir}")
    if os.path.exists(os.path.join(out_dir, "..", "manifest.sha256")):  # a shipped model folder
        write_manifest(os.path.dirname(os.path.abspath(out_dir)))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="public/models/tiny-vlm-shapes/testset-ood")
    ap.add_argument("--n", type=int, default=420)
    a = ap.parse_args()
    write_split(a.out, a.n)
