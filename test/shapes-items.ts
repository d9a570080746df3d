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
}

interface RefItem {
  index: number;
  match: boolean;
  first_top20_logits: number[];
}

export function sureShapesItem(model = SHAPES_MODEL): { item: ShapesItem; imagePath: string; sure: boolean } {
  const items = (JSON.parse(readFileSync(`${model}/testset/items.json`, 'utf8')) as { items: ShapesItem[] }).items;
  const reference = (JSON.parse(readFileSync(`${model}/reference_answers.json`, 'utf8')) as { items: RefItem[] }).items;
  const margin = (r: RefItem) => r.first_top20_logits[0] - r.first_top20_logits[1];
  const best = reference.filter((r) => r.match && margin(r) > 1).sort((a, b) => margin(b) - margin(a))[0];
  const item = items[best?.index ?? 0];
  return { item, imagePath: `${model}/testset/${item.image}`, sure: best !== undefined };
}
