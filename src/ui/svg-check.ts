/**
 * SVG uploads are refused. An SVG is a document, not pixels: it can carry
 * <script> and on* handlers that run wherever it is rendered as a document
 * (an <object>, <iframe>, <embed> or inline markup), and the model's image
 * processor cannot read it anyway. The check goes by the declared type, the
 * name, and the content — an SVG renamed photo.png with type image/png is
 * still refused — before any preview exists.
 */

export const SVG_REFUSED = 'SVG images are not supported: upload PNG, JPEG, WebP or GIF';

/** How many leading bytes are sniffed: enough for an XML declaration, a doctype and comments before <svg. */
const SNIFF_BYTES = 4096;

/** The refusal message when `file` is (or claims to be) an SVG or other XML document, else null; `label` is how the message names it. */
export async function svgRefusal(file: Blob, label?: string): Promise<string | null> {
  const name = 'name' in file && typeof file.name === 'string' ? file.name : '';
  const declared = /^image\/svg/i.test(file.type) || /\.svgz?$/i.test(name);
  if (declared || looksLikeSvg(new Uint8Array(await file.slice(0, SNIFF_BYTES).arrayBuffer()))) {
    return `${label ?? (name ? `"${name}"` : 'The image')} is an SVG: ${SVG_REFUSED}.`;
  }
  return null;
}

/**
 * Content sniffing: after an optional byte-order mark and whitespace, the
 * file starts with an XML declaration, or is markup with an <svg element in
 * its first bytes (a doctype or comment may come first). Pixel formats start
 * with binary magic numbers, so they never match.
 */
export function looksLikeSvg(head: Uint8Array): boolean {
  let text = new TextDecoder('utf-8').decode(head);
  // UTF-16 XML: drop the NULs of the ASCII range so the markup is seen either way
  if (head.length >= 2 && ((head[0] === 0xfe && head[1] === 0xff) || (head[0] === 0xff && head[1] === 0xfe))) text = text.replace(/[\0\uFFFD]/g, '');
  text = text.replace(/^\uFEFF/, '').trimStart();
  if (!text.startsWith('<')) return false;
  return /^<\?xml/i.test(text) || /<svg[\s>/:]/i.test(text);
}
