import { describe, expect, it } from 'vitest';
import { parseVisionConfig } from './vision-config.ts';

describe('parseVisionConfig', () => {
  it('a text model has no image path', () => {
    expect(parseVisionConfig({ model_type: 'llama' })).toBeNull();
  });

  it('idefics3 / smolvlm: image token and vision width', () => {
    expect(parseVisionConfig({ model_type: 'idefics3', image_token_id: 49190, vision_config: { hidden_size: 768 } })).toEqual({ kind: 'idefics3', imageTokenId: 49190, visionHidden: 768 });
    expect(parseVisionConfig({ model_type: 'smolvlm', image_token_id: 5, vision_config: { hidden_size: 8 } })?.kind).toBe('idefics3');
  });

  it('llava: image_token_index and the projector activation', () => {
    expect(parseVisionConfig({ model_type: 'llava', image_token_index: 32000, vision_config: { hidden_size: 1024 } })).toEqual({ kind: 'llava', imageTokenId: 32000, visionHidden: 1024, projectorAct: 'none' });
    expect(parseVisionConfig({ model_type: 'llava', image_token_index: 1, projector_hidden_act: 'gelu_pytorch_tanh', vision_config: { hidden_size: 4 } })?.projectorAct).toBe('tanh');
  });

  it('names what is wrong', () => {
    expect(() => parseVisionConfig({ model_type: 'qwen2_vl', vision_config: {} })).toThrow(/model_type "qwen2_vl" is not supported \(supported: idefics3\/smolvlm, llava\)/);
    expect(() => parseVisionConfig({ model_type: 'idefics3', vision_config: { hidden_size: 8 } })).toThrow(/needs "image_token_id"/);
    expect(() => parseVisionConfig({ model_type: 'llava', image_token_index: 1, vision_config: {} })).toThrow(/vision_config.hidden_size/);
    expect(() => parseVisionConfig({ model_type: 'llava', image_token_index: 1, projector_hidden_act: 'relu', vision_config: { hidden_size: 4 } })).toThrow(/projector_hidden_act "relu"/);
    expect(() => parseVisionConfig({ model_type: 'llava', image_token_index: 1, vision_feature_select_strategy: 'default', vision_config: { hidden_size: 4 } })).toThrow(/"default"/);
  });

  it('refuses negative, absurd or mistyped values and prototype names (found by config.fuzz.node.test.ts)', () => {
    expect(() => parseVisionConfig({ model_type: 'llava', image_token_index: -5, vision_config: { hidden_size: 4 } })).toThrow(/field "image_token_index" must be a token id/);
    expect(() => parseVisionConfig({ model_type: 'llava', image_token_index: 1, vision_config: { hidden_size: -8 } })).toThrow(/"vision_config.hidden_size" must be a positive integer up to 262144, got -8/);
    expect(() => parseVisionConfig({ model_type: 'llava', image_token_index: 1, vision_config: 'big' })).toThrow(/field "vision_config" must be an object/);
    expect(() => parseVisionConfig({ model_type: 'constructor', image_token_id: 1, vision_config: { hidden_size: 8 } })).toThrow(/model_type "constructor" is not supported/);
  });
});
