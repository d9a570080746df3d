/**
 * The shipped shapes VLM's held-out items, for tests that ask it about a
 * picture: the item the PyTorch reference answers right with the widest lead
 * of its first token over the runner-up — the engine (f32 on WebGPU), on any
 * path, must give the same answer. Without one (an untrained model), `sure`
 * is false and only completion can be checked. Node only (reads the disk).
 */
import { readFileSync } from 'node:fs';

export const SHAPES_MODEL = 'public/models/tiny-vlm-shapes';

export interface ShapesItem {
  index: number;
  image: string;
  question: string;
  answer: string;
  type: string;
  /** testset-ood only: the picture's size and its ground's RGB */
  width?: number;
  height?: number;
  background?: [number, number, number];
}

/** The shipped test splits: testset/ (first generation, 128 px) and testset-ood/ (never trained on). */
const SPLITS = {
  old: { dir: 'testset', reference: 'reference_answers.json' },
  ood: { dir: 'testset-ood', reference: 'reference_answers_ood.json' },
} as const;

interface RefItem {
  index: number;
  match: boolean;
  first_top20_logits: number[];
}

/** `which` narrows the candidates (e.g. white-background pictures); the first candidate stands in when none is sure. */
export function sureShapesItem(
  model = SHAPES_MODEL,
  split: keyof typeof SPLITS = 'old',
  which: (it: ShapesItem) => boolean = () => true,
): { item: ShapesItem; imagePath: string; sure: boolean } {
  const { dir, reference: refFile } = SPLITS[split];
  const items = (JSON.parse(readFileSync(`${model}/${dir}/items.json`, 'utf8')) as { items: ShapesItem[] }).items;
  const reference = (JSON.parse(readFileSync(`${model}/${refFile}`, 'utf8')) as { items: RefItem[] }).items;
  const margin = (r: RefItem) => r.first_top20_logits[0] - r.first_top20_logits[1];
  const candidates = reference.filter((r) => which(items[r.index]));
  const best = candidates.filter((r) => r.match && margin(r) > 1).sort((a, b) => margin(b) - margin(a))[0];
  const item = items[best?.index ?? candidates[0]?.index ?? 0];
  return { item, imagePath: `${model}/${dir}/${item.image}`, sure: best !== undefined };
}
