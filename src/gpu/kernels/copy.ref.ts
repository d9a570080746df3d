/** CPU oracle for the copy kernel: the first `words` words of src, then dst's own words after them. */
export function copyRef(src: Uint32Array, dst: Uint32Array, words: number): Uint32Array {
  const out = Uint32Array.from(dst);
  out.set(src.subarray(0, words));
  return out;
}
