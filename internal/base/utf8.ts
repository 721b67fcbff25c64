// The UTF-8 length of text, counted without encoding it.

/**
 * How many bytes `text` takes in UTF-8, without encoding it; a lone
 * surrogate counts as U+FFFD (3 bytes), as TextEncoder writes it.
 */
export function utf8Length(text: string): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit < 0x80) bytes += 1;
    else if (unit < 0x800) bytes += 2;
    else if (
      unit >= 0xd800 && unit < 0xdc00 && i + 1 < text.length &&
      (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00
    ) {
      bytes += 4; // a surrogate pair
      i++;
    } else bytes += 3; // the rest, lone surrogates as U+FFFD
  }
  return bytes;
}
