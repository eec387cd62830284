// FNV-1a (32 bit) over UTF-16 code units, as 8 hex digits. The UI puts it on each message
// (data-content-hash) so the browser tests can check, exactly and cheaply, that the text the
// page holds is the text the server stored; e2e/helpers.mjs computes the same function.
export function contentHash(text: string): string {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i += 1) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash.toString(16).padStart(8, '0');
}
