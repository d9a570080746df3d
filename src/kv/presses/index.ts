import { ExpectedAttentionPress } from './expected-attention.ts';
import { KnormPress } from './knorm.ts';
import { NoPress } from './none.ts';
import { ObservedAttentionPress } from './observed-attention.ts';
import type { Press } from './press.ts';
import { SlidingWindowPress } from './sliding-window.ts';
import { SnapKvPress } from './snapkv.ts';
import { StreamingLlmPress } from './streaming-llm.ts';
import { TovaPress } from './tova.ts';

export type { Press, ScoreContext } from './press.ts';
export { KEEP_SCORE } from './press.ts';
export { NO_PRESS } from './none.ts';

/** Every press with its default settings, by name (feeds the parametrised registry test). */
export const PRESSES: Record<string, () => Press> = {
  none: () => new NoPress(),
  knorm: () => new KnormPress(),
  'streaming-llm': () => new StreamingLlmPress(),
  'sliding-window': () => new SlidingWindowPress(),
  snapkv: () => new SnapKvPress(),
  tova: () => new TovaPress(),
  'observed-attention': () => new ObservedAttentionPress(),
  'expected-attention': () => new ExpectedAttentionPress(),
};

/** The press called `name`; throws a RangeError listing the known names. */
export function createPress(name: string): Press {
  const make = PRESSES[name];
  if (!make) throw new RangeError(`unknown press '${name}'; known: ${Object.keys(PRESSES).join(', ')}`);
  return make();
}
