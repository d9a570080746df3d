/**
 * The conversation as bubbles. Every piece of user or model text goes in as
 * a Text node (appendData / textContent), never as HTML.
 */
import { h } from './dom.ts';
import type { Answer } from './chat-session.ts';

export class ChatView {
  readonly el = h('div', { class: 'fc-transcript', id: 'transcript', 'aria-live': 'polite' });
  private readonly hint = h('p', { class: 'fc-hint' }, 'Pick, drop or paste an image, then ask about it.');
  private urls: string[] = [];
  private scrollQueued = false;

  constructor() {
    this.el.append(this.hint);
  }

  addUser(text: string, image: Blob | null): UserBubble {
    this.hint.remove();
    const bubble = h('div', { class: 'fc-msg fc-user' });
    if (image) {
      const url = URL.createObjectURL(image);
      this.urls.push(url);
      const img = h('img', { class: 'fc-thumb', alt: 'your image', src: url });
      img.addEventListener('error', () => img.replaceWith(h('span', { class: 'fc-thumb-missing' }, '(no preview: the browser cannot show this file)')));
      bubble.append(img);
    }
    bubble.append(h('div', { class: 'fc-text' }, text));
    this.el.append(bubble);
    this.scroll();
    return {
      fail: (message) => {
        bubble.classList.add('fc-failed');
        bubble.append(h('div', { class: 'fc-note' }, `Not answered: ${message}`));
      },
    };
  }

  startAssistant(): AssistantBubble {
    const text = document.createTextNode('');
    const meta = h('div', { class: 'fc-meta' });
    const bubble = h('div', { class: 'fc-msg fc-assistant', 'data-streaming': 'true' }, h('div', { class: 'fc-text fc-answer' }, text), meta);
    this.el.append(bubble);
    this.scroll();
    return {
      append: (t) => {
        text.appendData(t);
        this.scroll();
      },
      finish: (a) => {
        bubble.dataset.streaming = 'false';
        bubble.dataset.finish = a.finishReason;
        const parts = [a.finishReason === 'abort' ? 'stopped' : a.finishReason === 'length' ? 'hit max tokens' : 'done'];
        if (a.usage) parts.push(`${a.usage.completion_tokens} tokens`, `TTFT ${a.usage.extra.ttftMs.toFixed(0)} ms`);
        meta.textContent = parts.join(' · ');
      },
      remove: () => bubble.remove(),
    };
  }

  /** What the empty chat says (depends on whether the model reads images). */
  setHint(text: string): void {
    this.hint.textContent = text;
  }

  clear(): void {
    for (const u of this.urls) URL.revokeObjectURL(u);
    this.urls = [];
    this.el.replaceChildren(this.hint);
  }

  /** Keeps the newest text in view, at most once per frame. */
  private scroll(): void {
    if (this.scrollQueued) return;
    this.scrollQueued = true;
    requestAnimationFrame(() => {
      this.scrollQueued = false;
      this.el.scrollTop = this.el.scrollHeight;
    });
  }
}

export interface UserBubble {
  fail(message: string): void;
}

export interface AssistantBubble {
  append(text: string): void;
  finish(answer: Answer): void;
  remove(): void;
}
