/**
 * The pixel values the engine computes for a folder of test images, for the PyTorch
 * reference (train/export.py): each image goes through the engine's own path in Node
 * (readImage → decodeImage with sharp → the model's transformers.js processor, resizing with the
 * engine's Pillow port src/model/image-resample.ts), so the
 * reference answers are computed on exactly the engine's pixels, resize included.
 *
 *   npx tsx scripts/processor-pixels.ts <model dir> <items.json> <out.f32>
 *
 * Writes the global tile of every item in items.json's order, float32 little-endian,
 * [n, 3, H, W]; prints n and the tile shape.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

import { readImage } from '../src/model/image-input.ts';
import { MultimodalProcessor } from '../src/model/multimodal-processor.ts';
import { resolveSource } from '../src/model/source.ts';
import { loadTokenizer } from '../src/model/tokenizer.ts';
import { parseVisionConfig } from '../src/model/vision-config.ts';

async function main(): Promise<void> {
  const [modelDir, itemsPath, outPath] = process.argv.slice(2);
  if (!modelDir || !itemsPath || !outPath) throw new Error('usage: processor-pixels.ts <model dir> <items.json> <out.f32>');
  const source = resolveSource(resolve(modelDir));
  const spec = parseVisionConfig(JSON.parse(new TextDecoder().decode(await source.readFile('config.json'))) as Record<string, unknown>);
  if (!spec) throw new Error(`${modelDir} is not a vision model`);
  const processor = await MultimodalProcessor.load(source, await loadTokenizer(source), spec);
  const { items } = JSON.parse(readFileSync(itemsPath, 'utf8')) as { items: { image: string }[] };
  const tiles: Float32Array[] = [];
  let dims: number[] = [];
  for (const [i, it] of items.entries()) {
    const bytes = readFileSync(join(dirname(itemsPath), it.image));
    const read = await readImage(new Blob([bytes], { type: 'image/png' }), `item ${i}`);
    const p = await processor.prepareImage(read, `item ${i}`);
    dims = p.pixelValues.dims.slice(-3);
    const tile = dims.reduce((a, b) => a * b, 1);
    // the global image is the last tile
    tiles.push(p.pixelValues.data.slice(p.pixelValues.data.length - tile));
  }
  const out = new Float32Array(tiles.reduce((n, t) => n + t.length, 0));
  let at = 0;
  for (const t of tiles) {
    out.set(t, at);
    at += t.length;
  }
  writeFileSync(outPath, new Uint8Array(out.buffer));
  console.log(`${tiles.length} ${dims.join(' ')}`);
}

main().catch((e: unknown) => {
  console.error((e as Error).message);
  process.exit(1);
});
