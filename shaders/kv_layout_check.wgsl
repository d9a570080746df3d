// kvRowStart probe, used by src/gpu/kv-layout.test.ts to check the TS twin in
// src/gpu/kv-layout.ts against shaders/kv_layout.wgsl (appended to this
// source, as every pool kernel does).
//   for case i < n, with args[7i..7i+7) = page, half, head, offset, numKvHeads, pageSize, rowWords:
//     out[i] = kvRowStart(page, half, head, offset, numKvHeads, pageSize, rowWords)
//
// Dispatch: ceil(n / WG) workgroups of WG threads over x, one case per thread.

struct Params { n: u32 }

override WG: u32 = 64;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> args: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  if (i >= p.n) { return; }
  let a = 7u * i;
  out[i] = kvRowStart(args[a], args[a + 1u], args[a + 2u], args[a + 3u], args[a + 4u], args[a + 5u], args[a + 6u]);
}
