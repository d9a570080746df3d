/**
 * The metrics panel: the last answer's TTFT and tokens/s (from its usage),
 * and the engine's pool use, cache hits and connected tabs (EngineStats),
 * polled while an answer streams (and now and then when idle: other tabs on
 * a shared engine come and go), with a live plot. Each value sits in a
 * <dd data-metric="…"> so tests and readers can find it.
 */
import { h } from './dom.ts';
import { LivePlot } from './live-plot.ts';
import type { Usage } from '../api/openai-types.ts';
import type { EngineStats } from '../api/index.ts';

const POLL_MS = 500;
const IDLE_POLL_MS = 3000;

const FIELDS = [
  ['ttft', 'TTFT'],
  ['tokens-per-s', 'tokens/s'],
  ['pool', 'pool pages in use'],
  ['image-cache-hits', 'image-cache hits'],
  ['encoder-calls', 'vision encoder runs'],
  ['prefix-hit-tokens', 'prefix-cache hit tokens'],
  ['prefix-source', 'last prompt from'], //  its tokens by where their KV came from: computed, GPU, CPU, stored
  ['cpu-tier', 'CPU tier'], //         pages and MB held, demotions / promotions
  ['swaps', 'swapped out / in'], //    preemption by offload
  ['stored', 'stored caches'], //      the IndexedDB tier: entries, MB, pages restored, verify failures
  ['tabs', 'tabs'], //  connections on the engine: the tabs (and elements) sharing it
] as const;

type Field = (typeof FIELDS)[number][0];

export class MetricsPanel {
  readonly el = h('section', { class: 'fc-metrics', id: 'metrics', 'aria-label': 'metrics' });
  private readonly values = new Map<Field, HTMLElement>();
  private readonly plot: LivePlot | null;
  private timer: ReturnType<typeof setInterval> | null = null;
  private idleTimer: ReturnType<typeof setInterval> | null = null;
  private tokens = 0;
  private lastTick = 0;
  private polling = false;

  /** `clearStored`: empties the stored caches (the "Clear stored caches" button; none without it). */
  constructor(private readonly stats: () => Promise<EngineStats>, withPlot: boolean, clearStored?: () => Promise<number>) {
    const dl = h('dl');
    for (const [key, label] of FIELDS) {
      const dd = h('dd', { 'data-metric': key }, '–');
      this.values.set(key, dd);
      dl.append(h('div', {}, h('dt', {}, label), dd));
    }
    this.plot = withPlot ? new LivePlot() : null;
    const clear = clearStored ? [h('button', { type: 'button', id: 'clear-stored', class: 'fc-clear-stored' }, 'Clear stored caches')] : [];
    clear[0]?.addEventListener('click', () => void clearStored!().then(() => this.refresh(), () => this.refresh()));
    this.el.append(dl, ...clear, ...(this.plot ? [this.plot.el] : []));
  }

  /** An answer started streaming: sample tokens/s and the pool every POLL_MS. */
  begin(): void {
    this.tokens = 0;
    this.lastTick = performance.now();
    this.timer ??= setInterval(() => void this.tick(), POLL_MS);
  }

  /** Counts streamed pieces (one chunk is about one token) for the live tokens/s. */
  token(): void {
    this.tokens++;
  }

  /** The answer ended: its figures, a last sample, and the polling stops. */
  end(usage: Usage | null): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (usage) {
      const x = usage.extra;
      this.set('ttft', `${x.ttftMs.toFixed(0)} ms`);
      const decodeMs = x.e2eMs - x.ttftMs;
      const tps = usage.completion_tokens > 1 && decodeMs > 0 ? ((usage.completion_tokens - 1) * 1000) / decodeMs : 0;
      this.set('tokens-per-s', tps.toFixed(1));
      const f = x.prefixFrom;
      if (f) this.set('prefix-source', `${usage.prompt_tokens - x.prefixHitTokens} computed · ${f.gpu} GPU · ${f.cpu} CPU · ${f.stored} stored`);
    }
    void this.tick();
  }

  /** Reads the engine's counters (after a load, or after an answer), and from then on now and then while idle. */
  async refresh(): Promise<void> {
    this.idleTimer ??= setInterval(() => {
      if (!this.timer && !this.polling) void this.refresh();
    }, IDLE_POLL_MS);
    try {
      this.show(await this.stats());
    } catch {
      // no model loaded (yet): leave the figures as they were
    }
  }

  private async tick(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    const now = performance.now();
    const tokensPerS = (this.tokens * 1000) / Math.max(1, now - this.lastTick);
    this.tokens = 0;
    this.lastTick = now;
    if (this.timer) this.set('tokens-per-s', `${tokensPerS.toFixed(1)} (live)`); // the answer's own figure replaces it at the end
    try {
      const s = await this.stats();
      this.show(s);
      this.plot?.push({ tokensPerS, pagesInUse: s.pool.pagesInUse });
    } catch {
      this.plot?.push({ tokensPerS, pagesInUse: 0 });
    } finally {
      this.polling = false;
    }
  }

  private show(s: EngineStats): void {
    this.set('pool', `${s.pool.pagesInUse} / ${s.pool.pagesTotal} (peak ${s.pool.peakPagesInUse})`);
    this.set('image-cache-hits', String(s.vision?.featureCacheHits ?? 0));
    this.set('encoder-calls', String(s.vision?.encoderCalls ?? 0));
    this.set('prefix-hit-tokens', String(s.prefixCache?.hitTokens ?? 0));
    this.set('tabs', String(s.clients ?? 1));
    const t = s.tiers;
    this.set('cpu-tier', t ? `${t.cpu.pages} pages, ${(t.cpu.bytes / 2 ** 20).toFixed(1)} MB · ↓${t.cpu.demotedPages} ↑${t.cpu.promotedPages}` : 'off');
    this.set('swaps', t ? `${t.swaps.outs} / ${t.swaps.ins}` : '–');
    const st = t?.stored;
    this.set('stored', st ? `${st.entries} pages, ${(st.bytes / 2 ** 20).toFixed(1)} MB · ${st.restoredTokens} tokens restored${st.verifyFailures ? ` · ${st.verifyFailures} failed verification` : ''}` : 'off');
  }

  private set(key: Field, text: string): void {
    this.values.get(key)!.textContent = text;
  }
}
