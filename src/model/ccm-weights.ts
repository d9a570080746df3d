/**
 * FastCache's learned KV compressor (CCM) as a model ships it (train/export_ccm.py):
 * `ccm_config.json` (factor, the region it was trained on, shapes) and
 * `ccm.safetensors` (per layer l: `layers.{l}.{k|v}.{0|2|4}.{weight|bias}`, the key
 * and value MLPs Linear(factor·hd → hd), ReLU, Linear(hd → hd), ReLU, Linear(hd → hd)).
 * Read into the kv_merge_mlp kernel's layout, one Float32Array per layer:
 * [K: W1 b1 W2 b2 W3 b3][V: the same], row = output (PyTorch's Linear layout).
 */
import type { ModelConfig } from './config.ts';
import { parseSafetensors, tensorToF32 } from './safetensors.ts';
import type { ModelSource } from './source.ts';

export const CCM_CONFIG = 'ccm_config.json';
export const CCM_WEIGHTS = 'ccm.safetensors';

export interface CcmWeights {
  /** Tokens merged into one row. */
  factor: number;
  /** The region it was trained on: only the image tokens. */
  region: 'image';
  /** The fraction of a region it evicts: 1 − 1/factor for a region of whole groups. */
  ratio: number;
  /** Per layer: the kernel's f32 layout (kvMergeMlpWeightFloats values). */
  layers: Float32Array[];
}

/** The model's CCM, or null when it ships none. Throws, naming the file and what is wrong, on a malformed one. */
export async function loadCcmWeights(source: ModelSource, config: ModelConfig): Promise<CcmWeights | null> {
  if (!(await source.has(CCM_CONFIG))) return null;
  const where = `model ${source.id}: ${CCM_CONFIG}`;
  let cfg: Record<string, unknown>;
  try {
    cfg = JSON.parse(new TextDecoder().decode(await source.readFile(CCM_CONFIG))) as Record<string, unknown>;
  } catch (e) {
    throw new Error(`${where} is not valid JSON (${(e as Error).message}); re-export it with train/export_ccm.py`);
  }
  const factor = cfg.factor;
  if (typeof factor !== 'number' || !Number.isInteger(factor) || factor < 2) throw new Error(`${where}: factor must be an integer ≥ 2, got ${JSON.stringify(factor)}`);
  if (cfg.region !== 'image') throw new Error(`${where}: region must be 'image' (the only one this runtime trains for), got ${JSON.stringify(cfg.region)}`);
  for (const [key, want] of [['num_layers', config.numLayers], ['num_kv_heads', config.numKvHeads], ['head_dim', config.headDim]] as const) {
    if (cfg[key] !== want) throw new Error(`${where}: ${key} is ${JSON.stringify(cfg[key])} but the model has ${want}; the compressor belongs to another model`);
  }
  const bytes = await source.readFile(CCM_WEIGHTS);
  const st = parseSafetensors(bytes);
  const hd = config.headDim;
  const layers = Array.from({ length: config.numLayers }, (_, l) => {
    const parts: Float32Array[] = [];
    for (const half of ['k', 'v']) {
      for (const [idx, nIn] of [[0, factor * hd], [2, hd], [4, hd]] as const) {
        parts.push(tensor(st, bytes, `layers.${l}.${half}.${idx}.weight`, [hd, nIn]));
        parts.push(tensor(st, bytes, `layers.${l}.${half}.${idx}.bias`, [hd]));
      }
    }
    const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  });
  return { factor, region: 'image', ratio: 1 - 1 / factor, layers };
}

function tensor(st: ReturnType<typeof parseSafetensors>, bytes: Uint8Array, name: string, shape: number[]): Float32Array {
  const info = st.tensors.get(name);
  if (!info) throw new Error(`${CCM_WEIGHTS}: tensor '${name}' is missing; re-export it with train/export_ccm.py`);
  if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i])) {
    throw new Error(`${CCM_WEIGHTS}: tensor '${name}' has shape [${info.shape.join(', ')}], expected [${shape.join(', ')}]`);
  }
  return tensorToF32(bytes, info, st.dataOffset);
}
