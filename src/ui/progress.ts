/** Download / load progress: one bar per file the engine reports (LoadProgress), plus an overall bar. */
import { h } from './dom.ts';
import type { LoadProgress } from '../api/index.ts';

interface Row { bar: HTMLProgressElement; text: HTMLSpanElement; loaded: number; total: number | null }

export class ProgressList {
  readonly el = h('div', { class: 'fc-progress', id: 'progress', hidden: true });
  private readonly overall = h('progress', { class: 'fc-progress-overall', max: 1, value: 0, 'aria-label': 'overall' });
  private readonly list = h('ul', { class: 'fc-progress-files' });
  private readonly rows = new Map<string, Row>();

  constructor() {
    this.el.append(this.overall, this.list);
  }

  reset(): void {
    this.rows.clear();
    this.list.replaceChildren();
    this.overall.value = 0;
    this.el.hidden = false;
    this.el.dataset.done = 'false';
  }

  update(p: LoadProgress): void {
    let row = this.rows.get(p.file);
    if (!row) {
      row = { bar: h('progress', { max: 1 }), text: h('span', { class: 'fc-progress-text' }), loaded: 0, total: null };
      this.rows.set(p.file, row);
      this.list.append(h('li', {}, h('span', { class: 'fc-progress-name' }, p.file), row.bar, row.text));
    }
    row.loaded = p.loaded;
    row.total = p.total;
    if (p.total) row.bar.value = Math.min(1, p.loaded / p.total);
    else row.bar.removeAttribute('value'); // indeterminate: size unknown
    row.text.textContent = p.total ? `${size(p.loaded)} / ${size(p.total)}` : size(p.loaded);
    let loaded = 0, total = 0;
    for (const r of this.rows.values()) {
      loaded += r.total ? Math.min(r.loaded, r.total) : 0;
      total += r.total ?? 0;
    }
    if (total > 0) this.overall.value = loaded / total;
  }

  /** Everything loaded: full bars, then the list folds away. */
  finish(): void {
    this.overall.value = 1;
    for (const r of this.rows.values()) r.bar.value = 1;
    this.el.dataset.done = 'true';
    this.el.hidden = true;
  }
}

function size(bytes: number): string {
  if (bytes < 1 << 10) return `${bytes} B`;
  if (bytes < 1 << 20) return `${(bytes / (1 << 10)).toFixed(1)} KB`;
  return `${(bytes / (1 << 20)).toFixed(1)} MB`;
}
