"""Write a safetensors file by hand (no safetensors package here): u64 LE header length, JSON header, raw data."""
import json
import struct

import numpy as np


def write_safetensors(path, tensors, f16=()):
    """tensors: name -> torch tensor; names in f16 are stored as F16, the rest as F32. Sorted names,
    header padded with spaces to a multiple of 8 bytes."""
    header, off, blobs = {}, 0, []
    for name in sorted(tensors):
        dt = "F16" if name in f16 else "F32"
        a = np.ascontiguousarray(tensors[name].detach().cpu().numpy().astype("<f2" if dt == "F16" else "<f4"))
        b = a.tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
