"""manifest.sha256 of a shipped model folder: "<sha256 hex>  <relative path>" per file, sorted by path
(as `sha256sum` writes it; src/model/shipped-manifest.node.test.ts checks it in CI)."""
import hashlib
import os


def write_manifest(dst):
    lines = []
    for root, _, files in os.walk(dst):
        for fn in sorted(files):
            p = os.path.join(root, fn)
            rel = os.path.relpath(p, dst)
            if rel == "manifest.sha256":
                continue
            with open(p, "rb") as f:
                lines.append(f"{hashlib.sha256(f.read()).hexdigest()}  {rel}")
    with open(os.path.join(dst, "manifest.sha256"), "w") as f:
        f.write("\n".join(sorted(lines, key=lambda l: l[66:])) + "\n")
