// The KV pool's page layout (diagram and CPU codec: src/gpu/kv-layout.ts, whose
// kvRowStart is this function's twin), shared by every kernel that addresses
// the pool; appended to their sources by the TS wrappers.
//   page → half (0 = K, 1 = V) → kv head → slot in the page → row of rowWords u32 words
// Returns the first word of that row.
fn kvRowStart(page: u32, half: u32, head: u32, offset: u32, numKvHeads: u32, pageSize: u32, rowWords: u32) -> u32 {
  return (((page * 2u + half) * numKvHeads + head) * pageSize + offset) * rowWords;
}
