/** The unsigned key kv_select orders scores by: monotone in the f32 order of the bit pattern (-0 < +0, NaNs by bits). */
export function scoreOrderKey(bits: number): number {
  return (bits >>> 31 ? ~bits : bits | 0x80000000) >>> 0;
}

/**
 * Reference kv_select: for each head, sort its tokens by (key desc, index asc),
 * take the first k, return them ascending. u32 [numKvHeads][k].
 */
export function kvSelectRef(scores: Float32Array, numKvHeads: number, numTokens: number, k: number): Uint32Array {
  const bits = new Uint32Array(scores.buffer, scores.byteOffset, scores.length);
  const out = new Uint32Array(numKvHeads * k);
  for (let h = 0; h < numKvHeads; h++) {
    const keys = Array.from({ length: numTokens }, (_, i) => scoreOrderKey(bits[h * numTokens + i]));
    const order = Array.from({ length: numTokens }, (_, i) => i).sort((x, y) => keys[y] - keys[x] || x - y);
    out.set(order.slice(0, k).sort((x, y) => x - y), h * k);
  }
  return out;
}
