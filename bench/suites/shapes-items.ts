/** The shapes VLM's held-out test items as the benchmarks use them: reference answers with their images, and exact-match grading. */

/** One entry of reference_answers.json `items`. */
export interface RefItem {
  index: number;
  type: string;
  question: string;
  expected: string;
  prompt_ids: number[];
  expected_ids: number[];
  greedy_ids: number[];
  match: boolean;
}

export interface Item extends RefItem {
  /** The split it is from ('old', 'ood'): indices repeat across splits. */
  split: ShapesSplit;
  image: Blob;
}

/**
 * The test splits a shapes model ships: 'old' = testset/ (the first generation's 128-px pictures),
 * 'ood' = testset-ood/ (pictures of several sizes by another renderer, never trained on).
 */
export type ShapesSplit = 'old' | 'ood';
export const SHAPES_SPLITS: Record<ShapesSplit, { reference: string; dir: string }> = {
  old: { reference: 'reference_answers.json', dir: 'testset' },
  ood: { reference: 'reference_answers_ood.json', dir: 'testset-ood' },
};

/** Parses a comma-separated list of splits (--split old,ood). */
export function parseSplits(s: string): ShapesSplit[] {
  const out = s.split(',').map((x) => x.trim());
  for (const x of out) if (!(x in SHAPES_SPLITS)) throw new Error(`--split takes ${Object.keys(SHAPES_SPLITS).join(' and/or ')}, got '${x}'`);
  return out as ShapesSplit[];
}

/** The first `n` items (all without n) of `model`'s test split, images fetched; and the reference file's other fields. */
export async function loadShapesItems(model: string, n?: number, split: ShapesSplit = 'old'): Promise<{ items: Item[]; accuracyByType?: Record<string, number>; total: number }> {
  const { reference, dir } = SHAPES_SPLITS[split];
  const ref = (await fetchJson(`${model}/${reference}`)) as { items: RefItem[]; accuracy_by_type?: Record<string, number> };
  const files = (await fetchJson(`${model}/${dir}/items.json`)) as { items: { index: number; image: string }[] };
  const fileOf = new Map(files.items.map((f) => [f.index, f.image]));
  const items = await Promise.all(
    ref.items.slice(0, n ?? ref.items.length).map(async (r) => {
      const name = fileOf.get(r.index);
      if (!name) throw new Error(`${dir}/items.json has no item ${r.index}`);
      const res = await fetch(`${model}/${dir}/${name}`);
      if (!res.ok) throw new Error(`${model}/${dir}/${name}: HTTP ${res.status}`);
      return { ...r, split, image: await res.blob() };
    }),
  );
  return { items, ...(ref.accuracy_by_type ? { accuracyByType: ref.accuracy_by_type } : {}), total: ref.items.length };
}

/** Equal ids, where the reference's trailing EOS (any of `eos`) stands for the answer having stopped. */
export function matchesReference(a: { tokens: readonly number[]; finishReason: string }, ref: readonly number[], eos: readonly number[]): boolean {
  const refStops = ref.length > 0 && eos.includes(ref[ref.length - 1]);
  if (refStops !== (a.finishReason === 'stop')) return false;
  return sameIds(a.tokens, refStops ? ref.slice(0, -1) : ref);
}

export function sameIds(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

async function fetchJson(url: string): Promise<unknown> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return res.json();
}
