import { describe, expect, test } from 'vitest';
import { checkImageFile } from './image-check.ts';
import { looksLikeSvg, svgRefusal, SVG_REFUSED } from './svg-check.ts';

const SCRIPTED = '<svg xmlns="http://www.w3.org/2000/svg" onload="window.__svg=1"><script>window.__svg=1</script><rect width="9" height="9"/></svg>';
const utf8 = (s: string) => new TextEncoder().encode(s);

describe('SVG uploads are refused', () => {
  test.each([
    ['declared: image/svg+xml', new File([SCRIPTED], 'logo.svg', { type: 'image/svg+xml' })],
    ['by name only (no type)', new File([SCRIPTED], 'logo.SVG')],
    ['compressed name', new File([new Uint8Array([0x1f, 0x8b, 8, 0])], 'logo.svgz')],
    ['sniffed: named .png, typed image/png', new File([SCRIPTED], 'photo.png', { type: 'image/png' })],
    ['sniffed: XML declaration, doctype, comment, BOM', new File(['\uFEFF  <?xml version="1.0"?>\n<!DOCTYPE svg><!-- x -->' + SCRIPTED], 'a.jpg', { type: 'image/jpeg' })],
    ['sniffed: a bare Blob (pasted)', new Blob([' \n<svg>' + SCRIPTED.slice(4)], { type: 'image/png' })],
  ])('%s', async (_, file) => {
    const check = await checkImageFile(file);
    expect(check.ok).toBe(false);
    expect(check.ok ? '' : check.message).toContain(SVG_REFUSED);
  });

  test('UTF-16 SVG is sniffed too', () => {
    const s = '<svg onload="x()"></svg>';
    const le = new Uint8Array(2 + s.length * 2);
    le.set([0xff, 0xfe]);
    for (let i = 0; i < s.length; i++) le[2 + i * 2] = s.charCodeAt(i);
    expect(looksLikeSvg(le)).toBe(true);
  });

  test('the message names the file', async () => {
    expect(await svgRefusal(new File([SCRIPTED], 'cat.png', { type: 'image/png' }))).toBe(`"cat.png" is an SVG: ${SVG_REFUSED}.`);
  });

  test('pixel formats and plain text are not SVG', async () => {
    expect(looksLikeSvg(new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))).toBe(false);
    expect(looksLikeSvg(new Uint8Array([0xff, 0xd8, 0xff, 0xe0]))).toBe(false);
    expect(looksLikeSvg(utf8('GIF89a<svg>'))).toBe(false); // markup after a magic number is not where a renderer looks
    expect(looksLikeSvg(utf8('just text that mentions <svg> later'))).toBe(false);
    expect(await svgRefusal(new File(['just text'], 'fake.png', { type: 'image/png' }))).toBeNull();
  });
});
