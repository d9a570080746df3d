/** Generation settings: KV compression (press, ratio, region), max tokens, temperature. */
import { h, labelled } from './dom.ts';
import type { CompressionOptions } from '../api/index.ts';

export const PRESSES = ['none', 'knorm', 'streaming-llm', 'sliding-window', 'snapkv', 'tova', 'observed-attention', 'expected-attention'] as const;

export interface ChatSettings {
  press: string;
  /** Fraction of the prompt's KV to evict, in [0, 1). */
  ratio: number;
  region: 'all' | 'image';
  maxTokens: number;
  temperature: number;
}

export const DEFAULT_SETTINGS: ChatSettings = { press: 'none', ratio: 0.5, region: 'all', maxTokens: 64, temperature: 0 };

export class SettingsPanel {
  readonly el = h('fieldset', { class: 'fc-settings', id: 'settings' });
  private readonly press = h('select', { id: 'press' }, ...PRESSES.map((p) => h('option', { value: p }, p)));
  private readonly ratio = h('input', { id: 'ratio', type: 'number', min: 0, max: 0.95, step: 0.05 });
  private readonly region = h('select', { id: 'region' }, h('option', { value: 'all' }, 'whole prompt'), h('option', { value: 'image' }, 'image tokens only'));
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
    if (s.press !== undefined) this.press.value = (PRESSES as readonly string[]).includes(s.press) ? s.press : 'none';
    if (s.ratio !== undefined && Number.isFinite(s.ratio)) this.ratio.value = String(clamp(s.ratio, 0, 0.95));
    if (s.region !== undefined) this.region.value = s.region === 'image' ? 'image' : 'all';
    if (s.maxTokens !== undefined) this.maxTokens.value = String(s.maxTokens);
    if (s.temperature !== undefined) this.temperature.value = String(s.temperature);
    this.syncEnabled();
  }

  get(): ChatSettings {
    return {
      press: this.press.value,
      ratio: clamp(Number(this.ratio.value) || 0, 0, 0.95),
      region: this.region.value === 'image' ? 'image' : 'all',
      maxTokens: Math.max(1, Math.floor(Number(this.maxTokens.value) || DEFAULT_SETTINGS.maxTokens)),
      temperature: clamp(Number(this.temperature.value) || 0, 0, 2),
    };
  }

  /** The request's kv_compression, or undefined when off. */
  compression(): CompressionOptions | undefined {
    const s = this.get();
    if (s.press === 'none' || s.ratio <= 0) return undefined;
    return { press: s.press, ratio: s.ratio, ...(s.region === 'image' ? { region: 'image' as const } : {}) }; // 'all' is the default
  }

  private syncEnabled(): void {
    const off = this.press.value === 'none';
    this.ratio.disabled = off;
    this.region.disabled = off;
  }
}

function clamp(x: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, x));
}
