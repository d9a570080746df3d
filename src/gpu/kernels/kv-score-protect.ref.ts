export const PROTECTED_SCORE = 3.0e38;

export function kvScoreProtectRef(scores: Float32Array, numTokens: number, start: number, end: number): Float32Array {
  const out = Float32Array.from(scores);
  for (let i = 0; i < out.length; i++) {
    const t = i % numTokens;
    if (t < start || t >= end) out[i] = PROTECTED_SCORE;
  }
  return out;
}
