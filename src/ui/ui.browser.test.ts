import { describe, expect, test } from 'vitest';
import { ChatView } from './chat-view.ts';
import { plainMessage } from './errors.ts';
import { ProgressList } from './progress.ts';
import { SettingsPanel } from './settings.ts';

// The page's pieces without the engine (the e2e tests drive them with it).

describe('SettingsPanel', () => {
  test('no kv_compression for press none or ratio 0; region only when image', () => {
    const s = new SettingsPanel();
    expect(s.compression()).toBeUndefined();
    s.set({ press: 'snapkv', ratio: 0 });
    expect(s.compression()).toBeUndefined();
    s.set({ ratio: 0.5 });
    expect(s.compression()).toEqual({ press: 'snapkv', ratio: 0.5 });
    s.set({ region: 'image' });
    expect(s.compression()).toEqual({ press: 'snapkv', ratio: 0.5, region: 'image' });
    expect(s.cachePrefix()).toBeUndefined();
    s.set({ region: 'image-cached' }); // the image prefix compressed once and kept: cache_prefix instead of kv_compression
    expect(s.compression()).toBeUndefined();
    expect(s.cachePrefix()).toEqual({ until: 'image', press: 'snapkv', ratio: 0.5 });
    s.set({ press: 'none' });
    expect(s.cachePrefix()).toBeUndefined();
  });
  test("press 'ccm' is offered only for a model that ships one, at its trained ratio on image tokens", () => {
    const s = new SettingsPanel();
    const option = s.el.querySelector<HTMLOptionElement>('#press option[value=ccm]')!;
    expect(option.disabled).toBe(true);
    s.set({ press: 'ccm', ratio: 0.5 });
    expect(s.get().press).toBe('none'); // not without a CCM
    s.setCcm(0.75);
    expect(option.disabled).toBe(false);
    s.set({ press: 'ccm', ratio: 0.5, region: 'all' });
    expect(s.compression()).toEqual({ press: 'ccm', ratio: 0.75, region: 'image' });
    expect(s.el.querySelector<HTMLInputElement>('#ratio')!.disabled).toBe(true);
    s.setCcm(null); // another model
    expect(s.get().press).toBe('none');
  });
  test('out-of-range values are clamped; unknown presses fall back to none', () => {
    const s = new SettingsPanel({ press: 'bogus', ratio: 3, maxTokens: 10 });
    expect(s.get()).toMatchObject({ press: 'none', ratio: 0.95, maxTokens: 10 });
  });
});

describe('ChatView', () => {
  test('user and model text are text, never markup', () => {
    const v = new ChatView();
    v.addUser('<b>hi</b><img src=x>', null);
    const a = v.startAssistant();
    a.append('<script>window.bad = 1</script>');
    a.append('<i>more</i>');
    a.finish({ text: '', usage: null, finishReason: 'stop' });
    expect(v.el.querySelectorAll('b, img, script, i')).toHaveLength(0);
    expect(v.el.querySelector('.fc-answer')!.textContent).toBe('<script>window.bad = 1</script><i>more</i>');
    expect(v.el.querySelector('.fc-assistant')!.getAttribute('data-finish')).toBe('stop');
  });
});

describe('ProgressList', () => {
  test('one bar per file and an overall bar over the files of known size', () => {
    const p = new ProgressList();
    p.reset();
    p.update({ file: 'config.json', loaded: 100, total: 100 });
    p.update({ file: 'model.safetensors', loaded: 100, total: 300 });
    p.update({ file: 'tokenizer.json', loaded: 50, total: null });
    expect(p.el.querySelectorAll('li progress')).toHaveLength(3);
    expect((p.el.querySelector('.fc-progress-overall') as HTMLProgressElement).value).toBeCloseTo(0.5);
    p.finish();
    expect(p.el.dataset.done).toBe('true');
  });
});

test('plainMessage: network failures in plain words', () => {
  expect(plainMessage(new TypeError('Failed to fetch'))).toMatch(/^Could not download it: the network is unreachable/);
  expect(plainMessage('boom')).toBe('Boom');
});
