/**
 * Where a chat's system message(s) end in its prompt: what a cache prefix
 * "until 'system'" keeps. Chat templates differ (some add a default system
 * prompt, some fold the system text into the first user turn, and a BPE
 * may merge the system text's last characters with the next turn's first),
 * so the answer is measured, never assumed: the ids the system messages
 * render to alone, as far as they agree with the whole prompt's.
 */

/**
 * How many leading tokens of `ids` agree with what the leading system
 * message(s) of `messages` render to on their own (`render`): 0 when there
 * are none, or when the template renders nothing of them first.
 */
export function systemPrefixLength<M extends { role: string }>(ids: readonly number[], messages: readonly M[], render: (system: M[]) => number[]): number {
  const first = messages.findIndex((m) => m.role !== 'system');
  const system = messages.slice(0, first < 0 ? messages.length : first);
  if (!system.length) return 0;
  let sys: number[];
  try {
    sys = render(system);
  } catch {
    return 0; // a template that refuses a system-only conversation has no system prefix to name
  }
  let n = 0;
  while (n < sys.length && n < ids.length - 1 && sys[n] === ids[n]) n++;
  return n;
}
