import type { PlotSpec } from './types.ts';

/** A small dependency-free SVG chart (bars or lines) for benchmark results; the runner rasterises it to PNG. */
const W = 720, H = 420, M = { l: 80, r: 180, t: 40, b: 60 };
const COLORS = ['#2563eb', '#dc2626', '#16a34a', '#9333ea', '#ea580c', '#0891b2', '#4b5563', '#ca8a04'];

export function renderSvg(p: PlotSpec): string {
  const ys = p.series.flatMap((s) => s.points.map((q) => q.y)).filter((y) => Number.isFinite(y));
  const yMax = niceMax(Math.max(...ys, 1e-9));
  const yMin = p.logY ? Math.max(Math.min(...ys.filter((y) => y > 0)) / 2, 1e-9) : 0;
  const pw = W - M.l - M.r, ph = H - M.t - M.b;
  const yPos = (y: number) => M.t + ph - (p.logY ? (Math.log(Math.max(y, yMin)) - Math.log(yMin)) / (Math.log(yMax) - Math.log(yMin)) : y / yMax) * ph;
  const out: string[] = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`, `<rect width="100%" height="100%" fill="white"/>`];
  out.push(`<text x="${W / 2 - M.r / 2}" y="22" text-anchor="middle" font-size="15">${esc(p.title)}</text>`);
  for (let i = 0; i <= 5; i++) {
    const y = p.logY ? yMin * Math.pow(yMax / yMin, i / 5) : (yMax * i) / 5;
    const py = yPos(y);
    out.push(`<line x1="${M.l}" x2="${M.l + pw}" y1="${py}" y2="${py}" stroke="#e5e7eb"/><text x="${M.l - 6}" y="${py + 4}" text-anchor="end">${fmt(y)}</text>`);
  }
  out.push(`<line x1="${M.l}" x2="${M.l}" y1="${M.t}" y2="${M.t + ph}" stroke="black"/><line x1="${M.l}" x2="${M.l + pw}" y1="${M.t + ph}" y2="${M.t + ph}" stroke="black"/>`);
  out.push(`<text x="${M.l + pw / 2}" y="${H - 15}" text-anchor="middle">${esc(p.xLabel)}</text>`);
  out.push(`<text transform="translate(18 ${M.t + ph / 2}) rotate(-90)" text-anchor="middle">${esc(p.yLabel)}</text>`);
  if (p.kind === 'bar') bars(p, out, pw, yPos);
  else lines(p, out, pw, yPos);
  p.series.forEach((s, i) => {
    const y = M.t + 10 + i * 18;
    out.push(`<rect x="${W - M.r + 15}" y="${y - 9}" width="12" height="12" fill="${COLORS[i % COLORS.length]}"/><text x="${W - M.r + 32}" y="${y + 1}">${esc(s.name)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n');
}

/** Several plots as panels of one SVG, `columns` to a row (one plot: the plain chart). */
export function renderPanels(plots: PlotSpec[], columns = 2): string {
  if (plots.length === 1) return renderSvg(plots[0]);
  const cols = Math.min(columns, plots.length), rows = Math.ceil(plots.length / cols);
  const panels = plots.map((p, i) => renderSvg(p).replace('<svg ', `<svg x="${(i % cols) * W}" y="${Math.floor(i / cols) * H}" `));
  return [`<svg xmlns="http://www.w3.org/2000/svg" width="${W * cols}" height="${H * rows}">`, `<rect width="100%" height="100%" fill="white"/>`, ...panels, '</svg>'].join('\n');
}

function bars(p: PlotSpec, out: string[], pw: number, yPos: (y: number) => number): void {
  const cats = [...new Set(p.series.flatMap((s) => s.points.map((q) => String(q.x))))];
  const gw = pw / cats.length, bw = (gw * 0.8) / p.series.length;
  cats.forEach((c, ci) => {
    out.push(`<text x="${M.l + gw * (ci + 0.5)}" y="${H - M.b + 16}" text-anchor="middle">${esc(c)}</text>`);
    p.series.forEach((s, si) => {
      const pt = s.points.find((q) => String(q.x) === c);
      if (!pt) return;
      const x = M.l + gw * ci + gw * 0.1 + bw * si, y = yPos(pt.y);
      out.push(`<rect x="${x}" y="${y}" width="${bw - 2}" height="${H - M.b - y}" fill="${COLORS[si % COLORS.length]}"/><text x="${x + bw / 2}" y="${y - 3}" text-anchor="middle" font-size="10">${fmt(pt.y)}</text>`);
    });
  });
}

function lines(p: PlotSpec, out: string[], pw: number, yPos: (y: number) => number): void {
  const xs = p.series.flatMap((s) => s.points.map((q) => Number(q.x)));
  const x0 = Math.min(...xs), x1 = Math.max(...xs);
  const xPos = (x: number) => M.l + (x1 === x0 ? pw / 2 : ((x - x0) / (x1 - x0)) * pw);
  for (let i = 0; i <= 5; i++) {
    const x = x0 + ((x1 - x0) * i) / 5;
    out.push(`<text x="${xPos(x)}" y="${H - M.b + 16}" text-anchor="middle">${fmt(x)}</text>`);
  }
  p.series.forEach((s, si) => {
    const c = COLORS[si % COLORS.length];
    const pts = s.points.map((q) => `${xPos(Number(q.x))},${yPos(q.y)}`);
    out.push(`<polyline fill="none" stroke="${c}" stroke-width="2" points="${pts.join(' ')}"/>`);
    s.points.forEach((q) => out.push(`<circle cx="${xPos(Number(q.x))}" cy="${yPos(q.y)}" r="3" fill="${c}"/>`));
  });
}

function niceMax(v: number): number {
  const e = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * e >= v) return m * e;
  return 10 * e;
}

function fmt(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  return a >= 1000 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : a >= 0.01 ? v.toFixed(2) : v.toExponential(1);
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export function markdownTable(t: { headers: string[]; rows: (string | number)[][] }): string {
  const cell = (v: string | number) => (typeof v === 'number' ? fmt(v) : v);
  return [`| ${t.headers.join(' | ')} |`, `|${t.headers.map(() => '---').join('|')}|`, ...t.rows.map((r) => `| ${r.map(cell).join(' | ')} |`)].join('\n');
}
