/**
 * The page builds its DOM with `h()`: strings always become Text nodes
 * (never parsed as HTML), so model and user text cannot inject markup.
 */
export type Attrs = Record<string, string | number | boolean | undefined>;

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: (Node | string)[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    if (k === 'class') el.className = String(v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  el.append(...children);
  return el;
}

/** A labelled control: `<label><span>text</span>control</label>`. */
export function labelled(text: string, control: HTMLElement, cls = 'fc-field'): HTMLLabelElement {
  return h('label', { class: cls }, h('span', {}, text), control);
}
