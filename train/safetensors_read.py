"""Read a .safetensors file (F32, F16 and BF16 tensors) into float32 numpy arrays, without the safetensors
package (Debian has none): u64 LE header length, JSON header, raw little-endian data."""
import json
import struct

import numpy as np


def read_safetensors(path):
    """name -> float32 numpy array."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        raw = data[a:b]
        if t["dtype"] == "F32":
            v = np.frombuffer(raw, "<f4")
        elif t["dtype"] == "F16":
            v = np.frombuffer(raw, "<f2").astype(np.float32)
        elif t["dtype"] == "BF16":
            v = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            raise SystemExit(f"{path}: tensor {name} has dtype {t['dtype']}; only F32, F16 and BF16 are read")
        out[name] = v.reshape(t["shape"]).copy()
    return out
