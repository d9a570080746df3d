"""Shapes scenes as people draw them: the second-generation training data of the tiny VLM.

The first generation (shapes_data.py) drew one style -- 128 px, dark grey plain or noisy ground,
filled anti-aliased shapes in six exact colours -- and the model learned that style, not shapes: a
red circle and a blue square drawn on white in a paint program came back as "square" / "yellow".
This generator varies everything a person varies, each a pure function of (split, index):

  canvas     64..1024 px on the long side (log-uniform), square or 1:2..2:1
  ground     white, black, flat (low-saturation) colour, linear gradient, noisy (dark or light),
             and the first generation's dark grey plain / noisy ground
  shapes     circle, square, triangle, star; filled or outlined (thin to thick strokes);
             anti-aliased or hard-edged; sizes from small to most of the frame (one object);
             colours jittered in HSV around each named colour
  artefacts  mild Gaussian blur, JPEG at quality 35..90

Scenes keep shapes_data's vocabulary: every object sits in its own cell of the 3x3 grid (its centre in
the middle half of the cell, so "top left" is never a judgement call), so shapes_data.make_qa and
describe answer them unchanged and the answers stay checkable.

The renderer is our own (signed distance per pixel, numpy), not PIL's ImageDraw: the out-of-distribution
test split (ood_data.py) is drawn by ImageDraw with its own colours and placement, so that a score on it
is not a score on this rasteriser.

Pixels reach the model through the runtime's own path (transformers.js Idefics3ImageProcessor with
do_image_splitting false): resize so the long side is 128 (aspect kept, Lanczos), rescale and normalize,
then a bilinear resize of the float tensor to 128 x 128 (the processor's interpolate_4d), which stretches
a non-square picture. `processor_pixels` does the same; object geometry for the auxiliary heads is
given in that 128 x 128 frame (cx, cy, size), as shapes_data gives it.
"""
import colorsys
import io
import math
import random

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter

import shapes_data as D

MODEL_SIZE = 128
# base colours (RGB) of the six names; objects jitter around them in HSV
BASE_RGB = {
    "red": (220, 35, 35),
    "green": (40, 185, 60),
    "blue": (45, 85, 230),
    "yellow": (240, 215, 35),
    "purple": (150, 55, 205),
    "orange": (245, 135, 20),
}
GROUNDS = ["white", "black", "flat", "gradient", "noisy_dark", "noisy_light", "classic"]
GROUND_WEIGHTS = [0.24, 0.10, 0.14, 0.12, 0.08, 0.08, 0.24]
SPLIT_SEED = {"train": 3_000_017, "test": 9_000_011}


def _rng(split, index):
    return random.Random(SPLIT_SEED[split] * 1_000_003 + index)


def jitter_colour(rng, name):
    r, g, b = (c / 255 for c in BASE_RGB[name])
    h, s, v = colorsys.rgb_to_hsv(r, g, b)
    h = (h + rng.uniform(-0.022, 0.022)) % 1.0
    s = min(1.0, s * rng.uniform(0.78, 1.08))
    v = min(1.0, v * rng.uniform(0.78, 1.06))
    return tuple(int(round(c * 255)) for c in colorsys.hsv_to_rgb(h, s, v))


def _muted(rng, lo, hi):
    """A low-saturation colour (a ground never reads as one of the named colours)."""
    h, s, v = rng.random(), rng.uniform(0.0, 0.22), rng.uniform(lo, hi)
    return tuple(int(round(c * 255)) for c in colorsys.hsv_to_rgb(h, s, v))


def sample_ground(rng, kind):
    if kind == "white":
        return dict(kind=kind, noisy=False, a=tuple(rng.randint(238, 255) for _ in range(3)))
    if kind == "black":
        return dict(kind=kind, noisy=False, a=tuple(rng.randint(0, 22) for _ in range(3)))
    if kind == "flat":
        return dict(kind=kind, noisy=False, a=_muted(rng, 0.1, 0.95))
    if kind == "gradient":
        return dict(kind=kind, noisy=False, a=_muted(rng, 0.05, 1.0), b=_muted(rng, 0.05, 1.0),
                    angle=rng.uniform(0, 2 * math.pi))
    if kind == "noisy_dark":
        return dict(kind=kind, noisy=True, a=(rng.randint(15, 90),) * 3, amp=rng.randint(10, 30),
                    seed=rng.randrange(1 << 30))
    if kind == "noisy_light":
        return dict(kind=kind, noisy=True, a=(rng.randint(170, 240),) * 3, amp=rng.randint(10, 30),
                    seed=rng.randrange(1 << 30))
    # the first generation's ground: dark grey, plain or noisy (+-18)
    noisy = rng.random() < 0.5
    return dict(kind=kind, noisy=noisy, a=(rng.randint(20, 90),) * 3, amp=18, seed=rng.randrange(1 << 30))


def sample_canvas(rng, classic):
    if classic:
        return MODEL_SIZE, MODEL_SIZE
    long_side = int(round(math.exp(rng.uniform(math.log(64), math.log(1024)))))
    if rng.random() < 0.5:
        return long_side, long_side
    short = max(64, int(round(long_side / math.exp(rng.uniform(0, math.log(2))))))
    return (long_side, short) if rng.random() < 0.5 else (short, long_side)


def sample_style(rng, classic, w, h):
    if classic:
        return dict(aa=True, outline=False, stroke=0.0, blur=0.0, jpeg=0)
    outline = rng.random() < 0.3
    px = MODEL_SIZE / max(w, h)  # one canvas pixel in model pixels: strokes are sized so they survive the resize
    stroke = rng.uniform(1.2, 6.0) / px if outline else 0.0
    return dict(aa=rng.random() < 0.7, outline=outline, stroke=stroke,
                blur=rng.uniform(0.4, 1.4) if rng.random() < 0.25 else 0.0,
                jpeg=rng.randint(35, 90) if rng.random() < 0.3 else 0)


def sample_scene(rng):
    kind = rng.choices(GROUNDS, GROUND_WEIGHTS)[0]
    classic = kind == "classic"
    w, h = sample_canvas(rng, classic)
    n = rng.randint(1, 4)
    cells, combos = D.cells_and_kinds(rng, n)
    cw, ch = w / 3, h / 3
    objs = []
    for cell, (shape, colour) in zip(cells, combos):
        r, c = divmod(cell, 3)
        # centre in the middle half of its cell
        cx = (c + 0.5) * cw + rng.uniform(-0.25, 0.25) * cw
        cy = (r + 0.5) * ch + rng.uniform(-0.25, 0.25) * ch
        if classic:
            size = rng.uniform(20, 36)
        elif n == 1:  # alone: up to most of the frame, staying inside it
            room = 2 * min(cx, w - cx, cy, h - cy)
            size = rng.uniform(0.18, 0.95) * room
        else:  # inside its own cell
            room = 2 * min(cx - c * cw, (c + 1) * cw - cx, cy - r * ch, (r + 1) * ch - cy)
            size = rng.uniform(0.4, 0.95) * room
        size = max(size, 11 * max(w, h) / MODEL_SIZE)  # >= 11 model pixels across
        rgb = BASE_RGB[colour] if classic else jitter_colour(rng, colour)
        objs.append(dict(shape=shape, colour=colour, row=r, col=c, x=cx, y=cy, d=size, rgb=rgb,
                         rot=rng.uniform(-0.3, 0.3), inner=rng.uniform(0.38, 0.52),
                         tri=[rng.uniform(-0.08, 0.08) for _ in range(6)],
                         # the 128 x 128 model frame (stretched), for the auxiliary heads
                         cx=cx * MODEL_SIZE / w, cy=cy * MODEL_SIZE / h,
                         size=size * MODEL_SIZE / math.sqrt(w * h)))
    objs.sort(key=lambda o: (o["row"], o["col"]))
    return dict(kind="drawn", width=w, height=h, objects=objs, background=sample_ground(rng, kind),
                style=sample_style(rng, classic, w, h))


# ---------------------------------------------------------------- rendering (signed distances)

def _polygon_sdf(px, py, pts):
    """Signed distance (negative inside) from each pixel centre to a closed polygon."""
    d2 = np.full(px.shape, np.inf, dtype=np.float32)
    inside = np.zeros(px.shape, dtype=bool)
    n = len(pts)
    for i in range(n):
        (x0, y0), (x1, y1) = pts[i], pts[(i + 1) % n]
        ex, ey = x1 - x0, y1 - y0
        wx, wy = px - x0, py - y0
        t = np.clip((wx * ex + wy * ey) / (ex * ex + ey * ey), 0.0, 1.0)
        dx, dy = wx - ex * t, wy - ey * t
        np.minimum(d2, dx * dx + dy * dy, out=d2)
        crosses = (y0 > py) != (y1 > py)
        xint = x0 + (py - y0) * ex / (ey if ey != 0 else 1e-12)
        inside ^= crosses & (px < xint)
    d = np.sqrt(d2)
    return np.where(inside, -d, d)


def _shape_points(o):
    cx, cy, r, a0 = o["x"], o["y"], o["d"] / 2, -math.pi / 2 + o["rot"]
    if o["shape"] == "square":
        hs = r * 0.88
        cr, sr = math.cos(o["rot"]), math.sin(o["rot"])
        return [(cx + x * cr - y * sr, cy + x * sr + y * cr) for x, y in [(-hs, -hs), (hs, -hs), (hs, hs), (-hs, hs)]]
    if o["shape"] == "triangle":
        j = o["tri"]
        return [(cx + r * (math.cos(a0 + k * 2 * math.pi / 3) + j[2 * k]),
                 cy + r * (math.sin(a0 + k * 2 * math.pi / 3) + j[2 * k + 1])) for k in range(3)]
    pts = []
    for k in range(10):
        rr = r if k % 2 == 0 else r * o["inner"]
        a = a0 + k * math.pi / 5
        pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
    return pts


def _ground(bg, w, h):
    a = np.array(bg["a"], dtype=np.float32)
    if bg["kind"] == "gradient":
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        t = (xx / max(w - 1, 1) - 0.5) * math.cos(bg["angle"]) + (yy / max(h - 1, 1) - 0.5) * math.sin(bg["angle"])
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        return a + (np.array(bg["b"], dtype=np.float32) - a) * t[..., None]
    return np.broadcast_to(a, (h, w, 3)).copy()


def render(scene):
    """uint8 H x W x 3 at the canvas size."""
    w, h, st = scene["width"], scene["height"], scene["style"]
    img = _ground(scene["background"], w, h)
    for o in scene["objects"]:
        half = o["d"] / 2 + st["stroke"] + 2
        x0, x1 = max(0, int(o["x"] - half)), min(w, int(math.ceil(o["x"] + half)) + 1)
        y0, y1 = max(0, int(o["y"] - half)), min(h, int(math.ceil(o["y"] + half)) + 1)
        py, px = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
        if o["shape"] == "circle":
            d = np.hypot(px - o["x"], py - o["y"]) - o["d"] / 2
        else:
            d = _polygon_sdf(px, py, _shape_points(o))
        if st["outline"]:
            d = np.abs(d) - st["stroke"] / 2
        cov = np.clip(0.5 - d, 0.0, 1.0) if st["aa"] else (d <= 0).astype(np.float32)
        patch = img[y0:y1, x0:x1]
        patch += (np.array(o["rgb"], dtype=np.float32) - patch) * cov[..., None]
    bg = scene["background"]
    if bg["noisy"]:
        img += np.random.default_rng(bg["seed"]).integers(-bg["amp"], bg["amp"] + 1, size=img.shape)
    out = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    if st["blur"] or st["jpeg"]:
        im = Image.fromarray(out)
        if st["blur"]:
            im = im.filter(ImageFilter.GaussianBlur(st["blur"] * max(w, h) / 256))
        if st["jpeg"]:
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=st["jpeg"])
            im = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
        out = np.asarray(im)
    return out


def resized_size(w, h, longest=MODEL_SIZE):
    """transformers.js get_resize_output_image_size for size = {longest_edge}."""
    f = min(longest / w, longest / h)
    return math.floor(round(w * f, 2)), math.floor(round(h * f, 2))


def processor_pixels(img_u8):
    """uint8 H x W x 3 -> the Idefics3 processor's normalized [3, 128, 128] float tensor (no splitting)."""
    hgt, wid = img_u8.shape[:2]
    rw, rh = resized_size(wid, hgt)
    im = Image.fromarray(img_u8)
    if (rw, rh) != (wid, hgt):
        im = im.resize((rw, rh), Image.LANCZOS)
    x = torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).float().div(255.0).sub(0.5).div(0.5)
    if (rw, rh) != (MODEL_SIZE, MODEL_SIZE):
        x = F.interpolate(x[None], size=(MODEL_SIZE, MODEL_SIZE), mode="bilinear", align_corners=False)[0]
    return x


def get_item(split, index, qtype=None):
    rng = _rng(split, index)
    scene = sample_scene(rng)
    qtype = qtype or D.QTYPES[index % len(D.QTYPES)]
    q, a = D.make_qa(scene, qtype, rng)
    return dict(split=split, index=index, qtype=qtype, question=q, answer=a, scene=scene)


if __name__ == "__main__":
    import argparse
    import os
    ap = argparse.ArgumentParser(description="write sample drawn scenes as PNG (a look at the training data)")
    ap.add_argument("--out", default="/tmp/drawn")
    ap.add_argument("--n", type=int, default=24)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    for i in range(a.n):
        it = get_item("train", i)
        Image.fromarray(render(it["scene"])).save(os.path.join(a.out, f"drawn_{i:03d}.png"))
        print(i, it["scene"]["width"], it["scene"]["height"], it["scene"]["background"]["kind"],
              it["qtype"], "|", it["question"], "->", it["answer"])
