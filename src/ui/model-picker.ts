/** Which model to load: the bundled ones under /models/, or a Hugging Face hub id / URL typed in. */
import { h, labelled } from './dom.ts';

export const BUNDLED_MODELS: { ref: string; label: string }[] = [
  { ref: '/models/tiny-vlm-shapes', label: 'tiny-vlm-shapes (trained on shapes)' },
  { ref: '/models/tiny-vlm-idefics3', label: 'tiny-vlm-idefics3 (random weights)' },
  { ref: '/models/tiny-vlm-llava', label: 'tiny-vlm-llava (random weights)' },
  { ref: '/models/stories260K', label: 'stories260K (text only, stories)' },
];

export const DEFAULT_MODEL = BUNDLED_MODELS[0].ref;

export class ModelPicker {
  readonly el = h('form', { class: 'fc-model', id: 'model-picker' });
  private readonly select = h('select', { id: 'model-select' }, ...BUNDLED_MODELS.map((m) => h('option', { value: m.ref }, m.label)));
  private readonly custom = h('input', { id: 'model-ref', type: 'text', placeholder: 'or a hub id (owner/name) or URL', spellcheck: 'false', 'aria-label': 'hub id or URL of a model' });
  private readonly button = h('button', { type: 'submit', id: 'load-model' }, 'Load');

  constructor(current: string, onLoad: (ref: string) => void) {
    this.show(current);
    this.el.append(labelled('Model', this.select), this.custom, this.button);
    this.select.addEventListener('change', () => {
      this.custom.value = '';
      onLoad(this.select.value);
    });
    this.el.addEventListener('submit', (e) => {
      e.preventDefault();
      onLoad(this.custom.value.trim() || this.select.value);
    });
  }

  /** Shows `ref` as the current choice (in the list when bundled, else in the text field). */
  show(ref: string): void {
    const bundled = BUNDLED_MODELS.some((m) => m.ref === ref);
    if (bundled) this.select.value = ref;
    this.custom.value = bundled ? '' : ref;
  }

  set disabled(d: boolean) {
    this.select.disabled = d;
    this.button.disabled = d;
  }
}
