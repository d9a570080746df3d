/**
 * What the strategies benchmark measures on one engine: a set of requests
 * submitted together, watched step by step (peak pages, peak CPU-tier
 * bytes, peak running), and the counters they moved. Shared by the
 * strategies table and the multi-round chat.
 */
import type { Engine } from '../../src/engine/engine.ts';
import type { GenerateOptions } from '../../src/engine/types.ts';
import type { EngineStats } from '../../src/api/stats.ts';

export interface Job {
  id: string;
  ids: number[];
}

export interface Measured {
  wallMs: number;
  outputs: Map<string, number[]>;
  ttftMs: Map<string, number>;
  /** Most requests running in one step. */
  peakRunning: number;
  /** Most GPU pages holding live KV (the pool's in-use counter after resetStats). */
  peakPages: number;
  /** Most bytes the CPU tier held (cache entries; sampled after every step). */
  peakCpuBytes: number;
  outputTokens: number;
  /** Counter deltas over the run. */
  promptTokensComputed: number;
  prefixHitTokens: number;
  cpuHits: number;
  demotedPages: number;
  promotedPages: number;
  preemptions: number;
  swapOuts: number;
}

/** Runs `jobs` at once (the scheduler queues what does not fit) and measures them; `opts` apply to every job. */
export async function measure(engine: Engine, jobs: Job[], opts: GenerateOptions): Promise<Measured> {
  engine.resetStats();
  const before = engine.snapshot();
  const peak = { running: 0, cpu: 0 };
  const off = engine.on((e) => {
    if (e.kind !== 'step') return;
    const s = engine.snapshot();
    peak.running = Math.max(peak.running, s.requestsRunning);
    peak.cpu = Math.max(peak.cpu, s.tiers?.cpu.bytes ?? 0);
  });
  const t0 = performance.now();
  let results;
  try {
    results = await Promise.all(jobs.map((j) => engine.generate(j.ids, { ...opts, requestId: j.id })));
  } finally {
    off();
  }
  const wallMs = performance.now() - t0;
  await engine.flush();
  engine.checkIdle();
  const after = engine.snapshot();
  return {
    wallMs,
    outputs: new Map(jobs.map((j, i) => [j.id, results[i].tokens])),
    ttftMs: new Map(jobs.map((j, i) => [j.id, results[i].timing.ttftMs])),
    peakRunning: peak.running,
    peakPages: after.pool.peakPagesInUse,
    peakCpuBytes: peak.cpu,
    outputTokens: results.reduce((n, r) => n + r.tokens.length, 0),
    ...deltas(before, after),
  };
}

function deltas(a: EngineStats, b: EngineStats) {
  const cpu = (s: EngineStats) => s.tiers?.cpu ?? { hits: 0, demotedPages: 0, promotedPages: 0 };
  return {
    promptTokensComputed: b.promptTokens - a.promptTokens,
    prefixHitTokens: b.prefixCache.hitTokens - a.prefixCache.hitTokens,
    cpuHits: cpu(b).hits - cpu(a).hits,
    demotedPages: cpu(b).demotedPages - cpu(a).demotedPages,
    promotedPages: cpu(b).promotedPages - cpu(a).promotedPages,
    preemptions: b.preemptions - a.preemptions,
    swapOuts: (b.tiers?.swaps.outs ?? 0) - (a.tiers?.swaps.outs ?? 0),
  };
}

export function p50(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN;
}

/** How `got` compares with `want`, request by request: requests that differ, and the share of positions whose token agrees. */
export function agreement(want: Map<string, number[]>, got: Map<string, number[]>): { differ: number; tokenAgreement: number } {
  let differ = 0, same = 0, total = 0;
  for (const [id, g] of got) {
    const w = want.get(id);
    if (!w) throw new Error(`no baseline output for ${id}`);
    if (w.length !== g.length || w.some((t, i) => t !== g[i])) differ++;
    for (let i = 0; i < w.length; i++) if (g[i] === w[i]) same++;
    total += w.length;
  }
  return { differ, tokenAgreement: total ? same / total : 1 };
}
