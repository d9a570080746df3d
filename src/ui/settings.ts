/** Generation settings: KV compression (press, ratio, region), max tokens, temperature. */
import { h, labelled } from './dom.ts';
import type { CachePrefixOptions, CompressionOptions } from '../api/index.ts';

export const PRESSES = ['none', 'knorm', 'streaming-llm', 'sliding-window', 'snapkv', 'tova', 'observed-attention', 'expected-attention', 'ccm'] as const;

export interface ChatSettings {
  press: string;
  /** Fraction of the prompt's KV to evict, in [0, 1). */
  ratio: number;
  /** 'image-cached': the image prefix is compressed once and kept (cache_prefix; stored with the page's IndexedDB persistence). */
  region: 'all' | 'image' | 'image-cached';
  maxTokens: number;
  temperature: number;
}

export const DEFAULT_SETTINGS: ChatSettings = { press: 'none', ratio: 0.5, region: 'all', maxTokens: 64, temperature: 0 };

export class SettingsPanel {
  readonly el = h('fieldset', { class: 'fc-settings', id: 'settings' });
  private readonly press = h('select', { id: 'press' }, ...PRESSES.map((p) => h('option', { value: p, ...(p === 'ccm' ? { hidden: true, disabled: true } : {}) }, p === 'ccm' ? "ccm (the model's learned compressor)" : p)));
  /** The model's CCM ratio (press 'ccm' is offered only then, at that ratio, on image tokens). */
  private ccmRatio: number | null = null;
  private readonly ratio = h('input', { id: 'ratio', type: 'number', min: 0, max: 0.95, step: 0.05 });
  private readonly region = h('select', { id: 'region' }, h('option', { value: 'all' }, 'whole prompt'), h('option', { value: 'image' }, 'image tokens only'), h('option', { value: 'image-cached' }, 'image, compressed once and kept'));
  private readonly maxTokens = h('input', { id: 'max-tokens', type: 'number', min: 1, max: 1024 });
  private readonly temperature = h('input', { id: 'temperature', type: 'number', min: 0, max: 2, step: 0.1 });

  constructor(initial: Partial<ChatSettings> = {}) {
    this.el.append(
      h('legend', {}, 'Settings'),
      labelled('KV press', this.press),
      labelled('ratio', this.ratio),
      labelled('region', this.region),
      labelled('max tokens', this.maxTokens),
      labelled('temperature', this.temperature),
    );
    this.press.addEventListener('change', () => this.syncEnabled());
    this.set({ ...DEFAULT_SETTINGS, ...initial });
  }

  set(s: Partial<ChatSettings>): void {
    if (s.press !== undefined) this.press.value = (PRESSES as readonly string[]).includes(s.press) && (s.press !== 'ccm' || this.ccmRatio !== null) ? s.press : 'none';
    if (s.ratio !== undefined && Number.isFinite(s.ratio)) this.ratio.value = String(clamp(s.ratio, 0, 0.95));
    if (s.region !== undefined) this.region.value = s.region === 'image' || s.region === 'image-cached' ? s.region : 'all';
    if (s.maxTokens !== undefined) this.maxTokens.value = String(s.maxTokens);
    if (s.temperature !== undefined) this.temperature.value = String(s.temperature);
    this.syncEnabled();
  }

  get(): ChatSettings {
    return {
      press: this.press.value,
      ratio: clamp(Number(this.ratio.value) || 0, 0, 0.95),
      region: this.region.value === 'image' || this.region.value === 'image-cached' ? this.region.value : 'all',
      maxTokens: Math.max(1, Math.floor(Number(this.maxTokens.value) || DEFAULT_SETTINGS.maxTokens)),
      temperature: clamp(Number(this.temperature.value) || 0, 0, 2),
    };
  }

  /** The request's kv_compression, or undefined when off. */
  compression(): CompressionOptions | undefined {
    const s = this.get();
    if (s.press === 'none' || s.ratio <= 0 || s.region === 'image-cached') return undefined;
    return { press: s.press, ratio: s.ratio, ...(s.region === 'image' ? { region: 'image' as const } : {}) }; // 'all' is the default
  }

  /** The request's cache_prefix (the image prefix compressed once and kept), or undefined when off. */
  cachePrefix(): CachePrefixOptions | undefined {
    const s = this.get();
    if (s.press === 'none' || s.ratio <= 0 || s.region !== 'image-cached') return undefined;
    return { until: 'image', press: s.press, ratio: s.ratio };
  }

  /** Offers press 'ccm' when the loaded model ships one (its trained ratio), and withdraws it otherwise. */
  setCcm(ratio: number | null): void {
    this.ccmRatio = ratio;
    const opt = this.press.querySelector<HTMLOptionElement>('option[value=ccm]')!;
    opt.hidden = opt.disabled = ratio === null;
    if (ratio === null && this.press.value === 'ccm') this.press.value = 'none';
    this.syncEnabled();
  }

  private syncEnabled(): void {
    const off = this.press.value === 'none';
    const ccm = this.press.value === 'ccm' && this.ccmRatio !== null;
    if (ccm) { // trained for one setting: its ratio, on the image tokens
      this.ratio.value = String(this.ccmRatio);
      this.region.value = 'image';
    }
    this.ratio.disabled = off || ccm;
    this.region.disabled = off || ccm;
  }
}

function clamp(x: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, x));
}
