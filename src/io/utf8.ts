// Strict UTF-8: every text webtune reads (configs, tokenizer files, templates, adapter configs, checkpoint JSON,
// datasets) is decoded strictly, so a bad byte is an error naming the file and offset, never a silent U+FFFD.

const STRICT = new TextDecoder("utf-8", { fatal: true });

/** The index of the first byte of `b` where a UTF-8 sequence is invalid (or truncated at the end), or -1. */
export function invalidUtf8At(b: Uint8Array): number {
  for (let i = 0; i < b.length; ) {
    const c = b[i]!;
    if (c < 0x80) {
      i++;
      continue;
    }
    const n = c >= 0xc2 && c <= 0xdf ? 1 : c >= 0xe0 && c <= 0xef ? 2 : c >= 0xf0 && c <= 0xf4 ? 3 : -1;
    if (n < 0 || i + n >= b.length) return i;
    const lo = c === 0xe0 ? 0xa0 : c === 0xf0 ? 0x90 : 0x80;
    const hi = c === 0xed ? 0x9f : c === 0xf4 ? 0x8f : 0xbf;
    if (b[i + 1]! < lo || b[i + 1]! > hi) return i;
    for (let k = 2; k <= n; k++) if ((b[i + k]! & 0xc0) !== 0x80) return i;
    i += n + 1;
  }
  return -1;
}

/** `bytes` as UTF-8 text (a leading BOM dropped); bytes that are not UTF-8 are an error naming `label` and the offset. */
export function decodeUtf8(bytes: Uint8Array, label: string): string {
  try {
    return STRICT.decode(bytes);
  } catch (e) {
    const at = invalidUtf8At(bytes);
    throw new Error(`${label} is not UTF-8 text (an invalid byte sequence at byte offset ${Math.max(0, at)}); save it as UTF-8`, { cause: e });
  }
}
