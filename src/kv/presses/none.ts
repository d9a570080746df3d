import type { Press, ScoreContext } from './press.ts';

/**
 * No press: the uncompressed baseline every measurement compares against.
 * It records nothing and leaves `out` untouched; the compress stage skips a
 * sequence whose press is `none` (check `press.name === NO_PRESS`).
 */
export const NO_PRESS = 'none';

export class NoPress implements Press {
  readonly name = NO_PRESS;
  readonly needsQueries = false;

  encodeScores(_ctx: ScoreContext): void {}
}
