/**
 * An LMCache-style multi-round chat: N users each hold a conversation of R
 * rounds; every prompt is a shared system prompt, the user's history so far
 * (their earlier questions and the model's own answers) and a new question.
 * All users ask at once each round; the next round starts when every answer
 * is in. With a GPU pool too small for every history, a user's history is
 * gone from the GPU by their next turn: the prefix cache alone recomputes
 * it, the CPU tier brings it back.
 */
import type { Engine } from '../../src/engine/engine.ts';
import { measure, p50, type Job, type Measured } from './strategies-run.ts';

export interface ChatWorkload {
  users: number;
  rounds: number;
  system: number[];
  /** The question user `u` asks in round `r` (token ids, no BOS). */
  question: (u: number, r: number) => number[];
  maxTokens: number;
}

export interface ChatRound {
  round: number;
  ttftP50Ms: number;
  ttftsMs: number[];
  meanPromptTokens: number;
  promptTokensComputed: number;
  cpuHits: number;
  promotedPages: number;
  demotedPages: number;
  peakPages: number;
  wallMs: number;
}

export async function multiRoundChat(engine: Engine, w: ChatWorkload): Promise<{ rounds: ChatRound[]; outputs: Map<string, number[]> }> {
  const history: number[][] = Array.from({ length: w.users }, () => []);
  const rounds: ChatRound[] = [];
  const outputs = new Map<string, number[]>();
  for (let r = 0; r < w.rounds; r++) {
    const jobs: Job[] = history.map((h, u) => ({ id: `user${u}-round${r + 1}`, ids: [...w.system, ...h, ...w.question(u, r)] }));
    const m: Measured = await measure(engine, jobs, { maxTokens: w.maxTokens, ignoreEos: true });
    jobs.forEach((j, u) => {
      const answer = m.outputs.get(j.id)!;
      outputs.set(j.id, answer);
      history[u].push(...w.question(u, r), ...answer);
    });
    const ttfts = [...m.ttftMs.values()];
    rounds.push({
      round: r + 1, ttftP50Ms: p50(ttfts), ttftsMs: ttfts,
      meanPromptTokens: jobs.reduce((n, j) => n + j.ids.length, 0) / jobs.length,
      promptTokensComputed: m.promptTokensComputed, cpuHits: m.cpuHits, promotedPages: m.promotedPages, demotedPages: m.demotedPages,
      peakPages: m.peakPages, wallMs: m.wallMs,
    });
  }
  return { rounds, outputs };
}
