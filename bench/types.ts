/** What a benchmark suite returns: raw data, one Markdown table and one plot (or several, drawn as panels of one PNG). */
export interface BenchResult {
  name: string;
  /** Everything measured, machine-readable. */
  data: Record<string, unknown>;
  table: { headers: string[]; rows: (string | number)[][] };
  /** One plot; or `plots`, drawn as panels in a grid (two per row); both may be given (`plot` comes first). */
  plot?: PlotSpec;
  plots?: PlotSpec[];
  notes?: string[];
}

/**
 * What a suite returns to be run again after a browser restart on the same
 * profile (a real reload: a new browser, IndexedDB kept); `carry` (JSON)
 * comes back to it as its fourth argument.
 */
export interface BenchRestart {
  restart: true;
  carry: unknown;
}

export interface PlotSpec {
  title: string;
  kind: 'bar' | 'line';
  xLabel: string;
  yLabel: string;
  /** bar: categories on x; line: numeric x. */
  series: { name: string; points: { x: string | number; y: number }[] }[];
  logY?: boolean;
}
