/** Errors in plain words, shown in the page (role=alert) rather than only in the console. */
import { h } from './dom.ts';

/** A message a reader can act on, from whatever was thrown (Error objects cross the Worker as {name, message}). */
export function plainMessage(e: unknown): string {
  const msg = e instanceof Error ? e.message : typeof e === 'string' ? e : e && typeof e === 'object' && 'message' in e ? String(e.message) : String(e);
  if (/failed to fetch|networkerror|load failed|ERR_NAME|ERR_INTERNET/i.test(msg)) {
    return `Could not download it: the network is unreachable from here, or the address is wrong (${msg}).`;
  }
  if (/navigator\.gpu|requestAdapter|no (WebGPU )?adapter/i.test(msg)) {
    return `This browser gives the page no WebGPU: use Chrome or Edge 113+ (on Linux without a GPU: --enable-unsafe-webgpu). (${msg})`;
  }
  return msg ? msg[0].toUpperCase() + msg.slice(1) : 'Something went wrong (no message).';
}

export class ErrorBanner {
  readonly el = h('div', { class: 'fc-error', id: 'error', role: 'alert', hidden: true });
  private readonly text = h('span', { class: 'fc-error-text' });

  constructor() {
    const close = h('button', { type: 'button', class: 'fc-error-close', 'aria-label': 'Dismiss' }, '×');
    close.addEventListener('click', () => this.clear());
    this.el.append(this.text, close);
  }

  show(message: string): void {
    this.text.textContent = message;
    this.el.hidden = false;
  }

  clear(): void {
    this.text.textContent = '';
    this.el.hidden = true;
  }

  get message(): string {
    return this.el.hidden ? '' : this.text.textContent ?? '';
  }
}
