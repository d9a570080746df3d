// f16 conversion probe, used by src/gpu/f16.test.ts to check the CPU
// helpers in src/gpu/f16.ts against the GPU's own conversions bit for bit.
//   unpack: out[2i], out[2i+1] = unpack2x16float(words[i])   (f32 bits out)
//   pack:   words_out[i] = pack2x16float(vec2(vals[2i], vals[2i+1]))
//
// Dispatch: ceil(n / WG) workgroups of WG threads over x, one u32 word per
// thread (n = number of words).

struct Params { n: u32 }

override WG: u32 = 64;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;

@compute @workgroup_size(WG)
fn unpack(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  if (i >= p.n) { return; }
  let v = unpack2x16float(src[i]);
  dst[2u * i] = bitcast<u32>(v.x);
  dst[2u * i + 1u] = bitcast<u32>(v.y);
}

@compute @workgroup_size(WG)
fn pack(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  if (i >= p.n) { return; }
  dst[i] = pack2x16float(vec2<f32>(bitcast<f32>(src[2u * i]), bitcast<f32>(src[2u * i + 1u])));
}
