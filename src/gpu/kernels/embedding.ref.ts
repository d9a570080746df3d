/** CPU oracle for the row gather: out[r, :] = table[ids[r], :], zeros for an id out of range. */
export function gatherRef(table: Float32Array, ids: ArrayLike<number>, dim: number, tableRows: number): Float32Array {
  const out = new Float32Array(ids.length * dim);
  for (let r = 0; r < ids.length; r++) {
    if (ids[r] < tableRows) out.set(table.subarray(ids[r] * dim, (ids[r] + 1) * dim), r * dim);
  }
  return out;
}
