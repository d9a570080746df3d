/**
 * A small live plot on a canvas (no plotting library): tokens/s and pool
 * pages in use over the last samples, each line scaled to its own maximum.
 */
import { h } from './dom.ts';

export interface PlotSample { tokensPerS: number; pagesInUse: number }

const CAPACITY = 120;
/** The x axis spans at least this many samples, so a short run does not fill the width. */
const MIN_SPAN = 40;
const SERIES = [
  { key: 'tokensPerS', label: 'tokens/s', color: '#2563eb' },
  { key: 'pagesInUse', label: 'pool pages', color: '#ea580c' },
] as const;

export class LivePlot {
  readonly el = h('canvas', { class: 'fc-plot', id: 'plot', width: 300, height: 90, role: 'img', 'aria-label': 'tokens per second and pool pages over time' });
  private samples: PlotSample[] = [];

  constructor() {
    // draw the empty plot now: the canvas's first 2D context and text cost tens of ms on a
    // software rasterizer, which would otherwise land in the middle of the first answer
    this.draw();
  }

  push(s: PlotSample): void {
    this.samples.push(s);
    if (this.samples.length > CAPACITY) this.samples.shift();
    this.el.dataset.samples = String(this.samples.length);
    this.draw();
  }

  private draw(): void {
    const ctx = this.el.getContext('2d');
    if (!ctx) return;
    const { width: w, height: hgt } = this.el;
    ctx.clearRect(0, 0, w, hgt);
    ctx.font = '10px system-ui, sans-serif';
    const top = 14, bottom = hgt - 2;
    const span = Math.max(MIN_SPAN, this.samples.length) - 1;
    SERIES.forEach((s, i) => {
      const values = this.samples.map((p) => p[s.key]);
      const max = Math.max(1e-9, ...values);
      ctx.strokeStyle = s.color;
      ctx.fillStyle = s.color;
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      values.forEach((v, j) => {
        const x = (j / span) * w;
        const y = bottom - (v / max) * (bottom - top);
        if (j === 0) ctx.moveTo(x, y);
        else ctx.lineTo(x, y);
      });
      ctx.stroke();
      const last = values.at(-1) ?? 0;
      ctx.fillText(`${s.label} ${last.toFixed(s.key === 'tokensPerS' ? 1 : 0)} (max ${max < 1e-6 ? 0 : max.toFixed(0)})`, 4 + i * (w / 2), 10);
    });
  }
}
