"""Deterministic "shapes" VQA task data for the tiny VLM.

Every item is a pure function of (split, index): an RGB image IMG x IMG with 1-4 shapes
(circle, square, triangle, star) in 6 colours, each in a distinct cell of a 3x3 grid
(jittered centre, random size), on a plain or noisy dark background, plus one question of a
type from QTYPES and its answer, in SmolVLM chat form.

Image size: 128x128 (not the real processor's 512). The vision tower uses patch 8, so
128/8 = 16x16 = 256 patches, and a pixel-shuffle scale of 2 gives exactly 64 image tokens,
the real SmolVLM image_seq_len -- so the prompt layout is identical to the real model's while
the ViT only sees 256 tokens (CPU-trainable). 128 px keeps a star/triangle at 20-38 px clearly
distinguishable. The runtime must resize to 128 (preprocessor_config max_image_size 128,
do_image_splitting false); test images are already 128x128.

Usage:
  /usr/bin/python3 train/shapes_data.py --write-testset train/testset --n 300
writes test items 0..n-1 as PNG + items.json (question, answer, type, prompt text).
"""
import argparse
import json
import math
import os
import random

import numpy as np
from PIL import Image, ImageDraw

IMG = 128
SS = 2  # supersampling factor for anti-aliased rendering
SHAPES = ["circle", "square", "triangle", "star"]
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (50, 90, 235),
    "yellow": (235, 220, 40),
    "purple": (160, 60, 210),
    "orange": (245, 140, 20),
}
COLOUR_NAMES = list(COLOURS)
ROWS = ["top", "middle", "bottom"]
COLS = ["left", "center", "right"]
QTYPES = ["shape", "colour", "count", "position", "relation", "yesno", "describe"]
NUMBER_WORDS = ["zero", "one", "two", "three", "four"]
SPLIT_SEED = {"train": 1_000_003, "test": 7_777_777}

# Real SmolVLM-256M-Instruct prompt layout for one image without splitting
# (transformers.js Idefics3Processor._prompt_single_image, image_seq_len = 64):
IMAGE_SEQ_LEN = 64
IMAGE_PROMPT = "<fake_token_around_image><global-img>" + "<image>" * IMAGE_SEQ_LEN + "<fake_token_around_image>"


def cell_name(r, c):
    if r == 1 and c == 1:
        return "center"
    if r == 1:
        return COLS[c]
    if c == 1:
        return ROWS[r]
    return f"{ROWS[r]} {COLS[c]}"


def cell_phrase(r, c):
    return "in the center" if (r == 1 and c == 1) else f"at the {cell_name(r, c)}"


def chat_prompt(question):
    """Chat template applied to [{image}, {text: question}] + add_generation_prompt, with the
    <image> placeholder expanded exactly as the processor does."""
    return "<|im_start|>User:" + IMAGE_PROMPT + question + "<end_of_utterance>\nAssistant:"


def answer_text(answer):
    """What the assistant generates after 'Assistant:' (leading space, then EOS)."""
    return " " + answer + "<end_of_utterance>"


def _rng(split, index):
    return random.Random(SPLIT_SEED[split] * 1_000_003 + index)


def cells_and_kinds(rng, n):
    """n distinct 3x3 cells (0..8, row-major) and n distinct (shape, colour) pairs: every generator's layout."""
    cells = rng.sample(range(9), n)
    combos = rng.sample([(s, c) for s in SHAPES for c in COLOUR_NAMES], n)
    return cells, combos


def sample_scene(rng):
    n = rng.randint(1, 4)
    cells, combos = cells_and_kinds(rng, n)
    # bias towards repeated shapes/colours sometimes so colour+shape references get exercised
    objs = []
    for cell, (shape, colour) in zip(cells, combos):
        r, c = divmod(cell, 3)
        size = rng.uniform(20, 36)
        cx = (c + 0.5) * IMG / 3 + rng.uniform(-5, 5)
        cy = (r + 0.5) * IMG / 3 + rng.uniform(-5, 5)
        objs.append(dict(shape=shape, colour=colour, row=r, col=c, cx=cx, cy=cy, size=size,
                         rot=rng.uniform(-0.25, 0.25)))
    objs.sort(key=lambda o: (o["row"], o["col"]))
    bg = dict(noisy=rng.random() < 0.5, level=rng.randint(20, 90), seed=rng.randrange(1 << 30))
    return dict(objects=objs, background=bg)


def render(scene):
    bg = scene["background"]
    S = IMG * SS
    base = np.full((S, S, 3), bg["level"], dtype=np.float32)
    im = Image.fromarray(base.astype(np.uint8))
    d = ImageDraw.Draw(im)
    for o in scene["objects"]:
        col = COLOURS[o["colour"]]
        cx, cy, h = o["cx"] * SS, o["cy"] * SS, o["size"] * SS / 2
        if o["shape"] == "circle":
            d.ellipse([cx - h, cy - h, cx + h, cy + h], fill=col)
        elif o["shape"] == "square":
            hs = h * 0.88
            pts = [(-hs, -hs), (hs, -hs), (hs, hs), (-hs, hs)]
            cr, sr = math.cos(o["rot"]), math.sin(o["rot"])
            d.polygon([(cx + x * cr - y * sr, cy + x * sr + y * cr) for x, y in pts], fill=col)
        elif o["shape"] == "triangle":
            a0 = -math.pi / 2 + o["rot"]
            d.polygon([(cx + h * math.cos(a0 + k * 2 * math.pi / 3), cy + h * math.sin(a0 + k * 2 * math.pi / 3))
                       for k in range(3)], fill=col)
        elif o["shape"] == "star":
            a0 = -math.pi / 2 + o["rot"]
            pts = []
            for k in range(10):
                rr = h if k % 2 == 0 else h * 0.45
                a = a0 + k * math.pi / 5
                pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
            d.polygon(pts, fill=col)
    im = im.resize((IMG, IMG), Image.BOX)
    arr = np.asarray(im).astype(np.int16)
    if bg["noisy"]:
        nrng = np.random.default_rng(bg["seed"])
        arr = arr + nrng.integers(-18, 19, size=arr.shape, dtype=np.int16)
    return np.clip(arr, 0, 255).astype(np.uint8)


def ref(objs, o):
    """Shortest unique referring expression for object o."""
    if sum(x["shape"] == o["shape"] for x in objs) == 1:
        return f"the {o['shape']}"
    if sum(x["colour"] == o["colour"] for x in objs) == 1:
        return f"the {o['colour']} shape"
    return f"the {o['colour']} {o['shape']}"


def describe(scene):
    objs = scene["objects"]
    n = len(objs)
    bgw = "noisy" if scene["background"]["noisy"] else "plain"
    if n == 1:
        s1 = f"There is one shape on a {bgw} background."
    else:
        s1 = f"There are {NUMBER_WORDS[n]} shapes on a {bgw} background."
    parts = [f"{'an' if o['colour'] == 'orange' else 'a'} {o['colour']} {o['shape']} {cell_phrase(o['row'], o['col'])}"
             for o in objs]
    if n == 1:
        lst = parts[0]
    else:
        lst = ", ".join(parts[:-1]) + " and " + parts[-1]
    s2 = lst[0].upper() + lst[1:] + "."
    return s1 + " " + s2


def make_qa(scene, qtype, rng):
    objs = scene["objects"]
    if qtype == "shape":
        o = rng.choice(objs)
        if len(objs) == 1:
            return "What shape is in the image?", o["shape"]
        if sum(x["colour"] == o["colour"] for x in objs) == 1:
            return f"What shape is the {o['colour']} object?", o["shape"]
        return f"What shape is {cell_phrase(o['row'], o['col'])}?", o["shape"]
    if qtype == "colour":
        o = rng.choice(objs)
        if len(objs) == 1:
            return "What colour is the shape?", o["colour"]
        if sum(x["shape"] == o["shape"] for x in objs) == 1:
            return f"What colour is the {o['shape']}?", o["colour"]
        return f"What colour is the shape {cell_phrase(o['row'], o['col'])}?", o["colour"]
    if qtype == "count":
        k = rng.random()
        if k < 0.5:
            return "How many shapes are there?", str(len(objs))
        if k < 0.75:
            s = rng.choice(SHAPES)
            return f"How many {s}s are there?", str(sum(x["shape"] == s for x in objs))
        c = rng.choice(COLOUR_NAMES)
        return f"How many {c} shapes are there?", str(sum(x["colour"] == c for x in objs))
    if qtype == "position":
        o = rng.choice(objs)
        return f"Where is {ref(objs, o)}?", cell_name(o["row"], o["col"])
    if qtype == "relation":
        pairs = [(a, b) for a in objs for b in objs if a is not b and (a["col"] != b["col"] or a["row"] != b["row"])]
        if not pairs:  # one object: fall back to position
            o = objs[0]
            return f"Where is {ref(objs, o)}?", cell_name(o["row"], o["col"])
        a, b = rng.choice(pairs)
        horiz = a["col"] != b["col"] and (a["row"] == b["row"] or rng.random() < 0.5)
        if horiz:
            return (f"Is {ref(objs, a)} to the left or to the right of {ref(objs, b)}?",
                    "left" if a["col"] < b["col"] else "right")
        return f"Is {ref(objs, a)} above or below {ref(objs, b)}?", "above" if a["row"] < b["row"] else "below"
    if qtype == "yesno":
        if rng.random() < 0.5:
            o = rng.choice(objs)
            s, c = o["shape"], o["colour"]
            if rng.random() < 0.5:  # make it a "no" by changing shape or colour
                if rng.random() < 0.5:
                    s = rng.choice([x for x in SHAPES if x != s])
                else:
                    c = rng.choice([x for x in COLOUR_NAMES if x != c])
            ans = "yes" if any(x["shape"] == s and x["colour"] == c for x in objs) else "no"
            return f"Is there a {c} {s}?", ans
        s = rng.choice(SHAPES)
        ans = "yes" if any(x["shape"] == s for x in objs) else "no"
        return f"Is there a {s} in the image?", ans
    if qtype == "describe":
        return rng.choice(["Describe the image.", "What is in this image?", "Describe the image briefly."]), describe(scene)
    raise ValueError(qtype)


def get_item(split, index):
    rng = _rng(split, index)
    scene = sample_scene(rng)
    qtype = QTYPES[index % len(QTYPES)]
    q, a = make_qa(scene, qtype, rng)
    return dict(split=split, index=index, qtype=qtype, question=q, answer=a, scene=scene)


def write_testset(out_dir, n):
    os.makedirs(out_dir, exist_ok=True)
    items = []
    for i in range(n):
        it = get_item("test", i)
        fn = f"test_{i:04d}.png"
        Image.fromarray(render(it["scene"])).save(os.path.join(out_dir, fn), optimize=True)
        items.append(dict(index=i, image=fn, type=it["qtype"], question=it["question"], answer=it["answer"],
                          messages=[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": it["question"]}]}],
                          prompt=chat_prompt(it["question"])))
    with open(os.path.join(out_dir, "items.json"), "w") as f:
        json.dump(dict(image_size=IMG, note="prompt = chat template + processor <image> expansion (one image, no splitting)",
                       items=items), f, indent=1)
    print(f"wrote {n} items to {out_dir}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--write-testset", default=None)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--show", type=int, default=0)
    a = ap.parse_args()
    if a.write_testset:
        write_testset(a.write_testset, a.n)
    for i in range(a.show):
        it = get_item("train", i)
        print(it["qtype"], "|", it["question"], "->", it["answer"])
