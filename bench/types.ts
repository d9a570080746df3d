/** What a benchmark suite returns: raw data, one Markdown table and one plot. */
export interface BenchResult {
  name: string;
  /** Everything measured, machine-readable. */
  data: Record<string, unknown>;
  table: { headers: string[]; rows: (string | number)[][] };
  plot: PlotSpec;
  notes?: string[];
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
