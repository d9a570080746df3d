// Weight loaders for matmul.wgsl (appended to it) on adapters with
// `shader-f16`: the same packed f16 weights as matmul_w_f16.wgsl (two
// halves per u32, element 2i in the low half), read as f16 and converted by
// the hardware; the math stays f32, in the same order, so the results equal
// the integer-decode loader's bit for bit (its weights have no subnormals).
// The wrapper puts `enable f16;` in front of the module.

@group(0) @binding(2) var<storage, read> wh4: array<vec4<f16>>;  // vec4 and 8-chunk paths
@group(0) @binding(2) var<storage, read> wh: array<f16>;         // mm_any

fn w_row(c: u32) -> u32 { return c * (p.k / 4u); }
fn w_vec(base: u32, j: u32) -> vec4<f32> { return vec4<f32>(wh4[base + j]); }
fn w_row8(c: u32) -> u32 { return w_row(c); }
fn w_pair(base: u32, j: u32) -> Pair { return Pair(vec4<f32>(wh4[base + 2u * j]), vec4<f32>(wh4[base + 2u * j + 1u])); }

fn w_row_any(c: u32) -> u32 { return c * p.k; }
fn w_vec_any(base: u32, j: u32) -> vec4<f32> {
  let o = base + 4u * j;
  return vec4<f32>(f32(wh[o]), f32(wh[o + 1u]), f32(wh[o + 2u]), f32(wh[o + 3u]));
}
fn w_one_any(base: u32, i: u32) -> f32 { return f32(wh[base + i]); }
