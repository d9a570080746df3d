/**
 * Picking an image: a file input, dropping a file anywhere on the chat, or
 * pasting one from the clipboard. Cheap checks (image-check.ts) refuse empty,
 * non-image, SVG and too-large files at once; the picked image shows as a
 * preview until it is sent — only ever as an <img> of a file that passed
 * (never an <object>, <iframe>, <embed> or inline markup, where a document
 * could run script).
 */
import { h } from './dom.ts';
import { checkImageFile } from './image-check.ts';

/** What the file picker offers: the pixel formats the model's processor reads; not image/* (which includes SVG, refused in svg-check.ts). */
const ACCEPT = 'image/png,image/jpeg,image/webp,image/gif,image/bmp';

export class ImageInput {
  readonly el = h('div', { class: 'fc-image', id: 'image-input' });
  /** The image the next question is about, or null. */
  image: Blob | null = null;
  private readonly file = h('input', { type: 'file', id: 'file', accept: ACCEPT, class: 'fc-file' });
  private readonly preview = h('div', { class: 'fc-preview', id: 'preview', hidden: true });
  private url: string | null = null;

  /** dropTarget/pasteTarget: where drops and pastes are caught (the page's document, or a component's shadow root). */
  constructor(dropTarget: HTMLElement, pasteTarget: EventTarget, private readonly onError: (message: string) => void, private readonly onPicked: () => void) {
    const pick = h('button', { type: 'button', class: 'fc-pick', id: 'pick-image' }, 'Image…');
    pick.addEventListener('click', () => this.file.click());
    this.file.addEventListener('change', () => {
      const f = this.file.files?.[0];
      this.file.value = '';
      if (f) void this.set(f);
    });
    this.el.append(pick, this.file, this.preview);

    dropTarget.addEventListener('dragover', (e) => {
      if (!e.dataTransfer?.types.includes('Files')) return;
      e.preventDefault();
      dropTarget.classList.add('fc-dragging');
    });
    dropTarget.addEventListener('dragleave', () => dropTarget.classList.remove('fc-dragging'));
    dropTarget.addEventListener('drop', (e) => {
      dropTarget.classList.remove('fc-dragging');
      const f = e.dataTransfer?.files[0];
      if (!f) return;
      e.preventDefault();
      void this.set(f);
    });
    pasteTarget.addEventListener('paste', (e) => {
      const items = [...((e as ClipboardEvent).clipboardData?.items ?? [])];
      const f = items.find((i) => i.kind === 'file')?.getAsFile();
      if (!f) return; // plain text pastes go to the text box as usual
      e.preventDefault();
      void this.set(f);
    });
  }

  /** Checks and attaches a file; false (and a message through onError) when it is refused. */
  async set(file: Blob): Promise<boolean> {
    const check = await checkImageFile(file);
    if (!check.ok) {
      this.clear();
      this.onError(check.message);
      return false;
    }
    this.clear();
    this.image = file;
    this.url = URL.createObjectURL(file);
    const name = 'name' in file && typeof file.name === 'string' ? file.name : 'pasted image';
    const dims = check.size ? ` · ${check.size.width} × ${check.size.height}` : '';
    const img = h('img', { src: this.url, alt: `preview of ${name}` });
    img.addEventListener('error', () => img.replaceWith(h('span', { class: 'fc-thumb-missing' }, '(no preview)')));
    const remove = h('button', { type: 'button', class: 'fc-remove', 'aria-label': 'Remove the image' }, '×');
    remove.addEventListener('click', () => this.clear());
    this.preview.replaceChildren(img, h('span', { class: 'fc-preview-name' }, `${name}${dims}`), remove);
    this.preview.hidden = false;
    this.onPicked();
    return true;
  }

  clear(): void {
    if (this.url) URL.revokeObjectURL(this.url);
    this.url = null;
    this.image = null;
    this.preview.replaceChildren();
    this.preview.hidden = true;
  }
}
