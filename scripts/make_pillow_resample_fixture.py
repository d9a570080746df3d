"""Pillow's resize outputs for src/model/image-resample.node.test.ts (test/pillow-resample.json).

    /usr/bin/python3 scripts/make_pillow_resample_fixture.py

Inputs are an LCG's bytes (the test regenerates them), so only Pillow's outputs are stored:
every filter on odd sizes, down, up, one axis, extreme ratios; plus the SHA-256 of Pillow's
LANCZOS resize of real out-of-distribution test pictures to the processor's size.
"""
import hashlib
import json
import os
import sys

import numpy as np
import PIL
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "train"))
from drawn_data import resized_size  # noqa: E402  (the processor's target size, as training uses it)
SIZES = [((37, 23), (11, 7)), ((5, 9), (13, 17)), ((29, 31), (31, 8)), ((17, 13), (17, 5)), ((17, 13), (6, 13)),
         ((1, 1), (3, 2)), ((200, 3), (7, 3)), ((3, 150), (2, 11)), ((64, 48), (63, 47))]
FILTERS = [0, 1, 2, 3, 4, 5]


def lcg_bytes(seed, n):
    out = bytearray(n)
    x = seed
    for i in range(n):
        x = (x * 1103515245 + 12345) % 2 ** 31
        out[i] = (x >> 16) & 255
    return bytes(out)


def main():
    cases = []
    for ci, ((w, h), (ow, oh)) in enumerate(SIZES):
        for f in FILTERS:
            for ch in (3, 1):
                seed = 1000 + ci * 16 + f * 2 + (ch == 1)
                raw = np.frombuffer(lcg_bytes(seed, w * h * ch), np.uint8)
                data = raw.reshape(h, w, 3) if ch == 3 else raw.reshape(h, w)
                im = Image.fromarray(data, "RGB" if ch == 3 else "L")
                out = np.asarray(im.resize((ow, oh), f))
                cases.append(dict(seed=seed, width=w, height=h, channels=ch, outWidth=ow, outHeight=oh, filter=f,
                                  out=out.tobytes().hex()))
    ood = os.path.join(REPO, "public", "models", "tiny-vlm-shapes", "testset-ood")
    items = json.load(open(os.path.join(ood, "items.json")))["items"]
    seen, real = set(), []
    for it in items:
        if (it["width"], it["height"]) in seen or len(real) >= 6:
            continue
        seen.add((it["width"], it["height"]))
        im = Image.open(os.path.join(ood, it["image"])).convert("RGB")
        w, h = im.size
        ow, oh = resized_size(w, h)
        out = np.asarray(im.resize((ow, oh), Image.LANCZOS))
        real.append(dict(image=it["image"], outWidth=ow, outHeight=oh, sha256=hashlib.sha256(out.tobytes()).hexdigest()))
    path = os.path.join(REPO, "test", "pillow-resample.json")
    with open(path, "w") as fh:
        json.dump(dict(pillow=PIL.__version__, lcg="x = (x * 1103515245 + 12345) mod 2^31, byte = (x >> 16) & 255",
                       cases=cases, ood=real), fh, indent=0)
    print(f"{len(cases)} cases, {len(real)} real pictures -> {path}")


if __name__ == "__main__":
    main()
