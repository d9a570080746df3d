/**
 * VisionSpec: what a VLM's config.json says about its image path, beside the
 * text decoder that parseConfig reads from `text_config`.
 *
 *   idefics3 (SmolVLM): ONNX vision encoder whose `image_features` output is
 *     already projected to the decoder's hidden size (SigLIP + pixel shuffle +
 *     connector, as the transformers.js exports ship it).
 *   llava: ONNX vision tower output (vision hidden size) + the
 *     `multi_modal_projector` (linear_1 → GELU → linear_2) from model.safetensors,
 *     applied on the GPU.
 */
export type VisionKind = 'idefics3' | 'llava';

export interface VisionSpec {
  kind: VisionKind;
  imageTokenId: number;
  /** Vision tower width (the projector's input for llava). */
  visionHidden: number;
  /** llava: the projector's activation ('gelu' exact or 'gelu_pytorch_tanh'). */
  projectorAct?: 'none' | 'tanh';
}

type Json = Record<string, unknown>;

const KIND_BY_TYPE: Record<string, VisionKind> = { idefics3: 'idefics3', smolvlm: 'idefics3', llava: 'llava' };

/** As config.ts's limits: far above any real vision tower (SigLIP-so400m: 1152), and the projector's [h, visionHidden] is sized from it. */
const MAX_VISION_HIDDEN = 2 ** 18;
const MAX_TOKEN_ID = 2 ** 24;

/** The image path of a config.json, or null for a text-only model. Throws on a VLM it cannot run. */
export function parseVisionConfig(json: Json): VisionSpec | null {
  const type = typeof json.model_type === 'string' ? json.model_type : '';
  // Object.hasOwn, not `in`: a model_type "constructor" must not find Object.prototype's.
  if (!Object.hasOwn(KIND_BY_TYPE, type)) {
    if (json.vision_config != null) throw new Error(`config.json: vision-language model_type "${type}" is not supported (supported: idefics3/smolvlm, llava)`);
    return null;
  }
  const kind = KIND_BY_TYPE[type];
  const vc = json.vision_config ?? {};
  if (typeof vc !== 'object' || vc === null || Array.isArray(vc)) throw new Error(`config.json: field "vision_config" must be an object, got ${JSON.stringify(vc)}`);
  const imageTokenId = json.image_token_id ?? json.image_token_index;
  if (imageTokenId == null) throw new Error(`config.json: a ${type} model needs "image_token_id" (or "image_token_index")`);
  if (!Number.isInteger(imageTokenId) || (imageTokenId as number) < 0 || (imageTokenId as number) >= MAX_TOKEN_ID) {
    throw new Error(`config.json: field "${json.image_token_id != null ? 'image_token_id' : 'image_token_index'}" must be a token id (an integer from 0 to ${MAX_TOKEN_ID - 1}), got ${JSON.stringify(imageTokenId)}`);
  }
  const visionHidden = (vc as Json).hidden_size;
  if (visionHidden == null) throw new Error('config.json: missing field "vision_config.hidden_size"');
  if (!Number.isInteger(visionHidden) || (visionHidden as number) <= 0 || (visionHidden as number) > MAX_VISION_HIDDEN) {
    throw new Error(`config.json: field "vision_config.hidden_size" must be a positive integer up to ${MAX_VISION_HIDDEN}, got ${JSON.stringify(visionHidden)}`);
  }
  const spec: VisionSpec = { kind, imageTokenId: imageTokenId as number, visionHidden: visionHidden as number };
  if (kind === 'llava') {
    if (json.vision_feature_select_strategy === 'default') {
      throw new Error('config.json: vision_feature_select_strategy "default" (drop the CLS token) is not supported; export the vision encoder with the selection applied');
    }
    const act = json.projector_hidden_act ?? 'gelu';
    if (act !== 'gelu' && act !== 'gelu_pytorch_tanh') throw new Error(`config.json: projector_hidden_act "${typeof act === 'string' ? act : JSON.stringify(act)}" is not supported (gelu, gelu_pytorch_tanh)`);
    spec.projectorAct = act === 'gelu' ? 'none' : 'tanh';
  }
  return spec;
}

/** The ONNX vision encoder file: the exact-precision export first, then the reduced ones. */
export const VISION_ENCODER_FILES = [
  'onnx/vision_encoder.onnx', 'onnx/vision_encoder_fp16.onnx', 'onnx/vision_encoder_int8.onnx',
  'onnx/vision_encoder_quantized.onnx', 'onnx/vision_encoder_q4.onnx', 'onnx/vision_encoder_q4f16.onnx',
];
