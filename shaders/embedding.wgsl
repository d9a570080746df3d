// Row gather: out[r, j] = table[ids[r], j] for r < rows, j < dim; out is f32.
// Token embeddings (table = the embedding matrix) and picking hidden rows
// (table = hidden states, ids = the rows wanted). An id >= tableRows gives a
// row of zeros instead of reading out of bounds.
//   main:     f32 table, one element per thread
//   main_f16: f16 table packed two per u32 (dim even), one word (two elements) per thread
//
// Dispatch: ceil(rows * dim / WG) workgroups (main) or ceil(rows * dim / 2 / WG)
// (main_f16), 1-D, split over x/y by `grid()` when above 65535.

struct Params { rows: u32, dim: u32, tableRows: u32 }

override WG: u32 = 256;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> table: array<f32>;
@group(0) @binding(1) var<storage, read> table16: array<u32>;
@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
  return (wid.x + wid.y * nwg.x) * WG + lid;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = index(wid, nwg, lid);
  if (i >= p.rows * p.dim) { return; }
  let r = i / p.dim;
  let id = ids[r];
  var v = 0.0;
  if (id < p.tableRows) { v = table[id * p.dim + (i - r * p.dim)]; }
  out[i] = v;
}

@compute @workgroup_size(WG)
fn main_f16(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
  let i = index(wid, nwg, lid);
  let half = p.dim / 2u;
  if (i >= p.rows * half) { return; }
  let r = i / half;
  let id = ids[r];
  var v = vec2<f32>(0.0);
  if (id < p.tableRows) { v = unpack2x16float(table16[id * half + (i - r * half)]); }
  out[2u * i] = v.x;
  out[2u * i + 1u] = v.y;
}
