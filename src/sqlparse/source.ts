/**
 * A SQL file's text with the position arithmetic the parser needs. libpg-query reports node and
 * token locations as UTF-8 byte offsets, but JavaScript strings index UTF-16 code units and people
 * read lines and columns, so every location goes through here once.
 */
export interface Position {
  /** 1-based line. */
  line: number;
  /** 1-based column in UTF-16 code units (what editors and SARIF count by default). */
  column: number;
}

export class SourceText {
  readonly text: string;
  readonly byteLength: number;
  /** utf16Index[byte] for every byte offset that starts a character (and the end); absent for ASCII text. */
  private readonly utf16Index: Int32Array | undefined;
  private readonly lineStarts: number[];

  constructor(text: string) {
    this.text = text;
    const bytes = Buffer.byteLength(text);
    this.byteLength = bytes;
    // Equal lengths mean every character is one byte: offsets need no translation.
    this.utf16Index = bytes === text.length ? undefined : buildUtf16Index(text, bytes);
    this.lineStarts = [0];
    for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) === 10) this.lineStarts.push(i + 1);
  }

  /** The UTF-16 index of a byte offset (clamped to the text). */
  indexOfByte(byte: number): number {
    const clamped = Math.max(0, Math.min(byte, this.byteLength));
    if (!this.utf16Index) return clamped;
    let index = this.utf16Index[clamped]!;
    // A byte in the middle of a character maps to that character's start.
    for (let b = clamped; index < 0 && b > 0; b--) index = this.utf16Index[b - 1]!;
    return Math.max(index, 0);
  }

  /** The text between two byte offsets. */
  sliceBytes(start: number, end: number): string {
    return this.text.slice(this.indexOfByte(start), this.indexOfByte(end));
  }

  /** Line and column of a UTF-16 index. */
  positionOfIndex(index: number): Position {
    let low = 0;
    let high = this.lineStarts.length - 1;
    while (low < high) {
      const middle = (low + high + 1) >> 1;
      if (this.lineStarts[middle]! <= index) low = middle;
      else high = middle - 1;
    }
    return { line: low + 1, column: index - this.lineStarts[low]! + 1 };
  }

  positionOfByte(byte: number): Position {
    return this.positionOfIndex(this.indexOfByte(byte));
  }

  /** The UTF-16 index of the n-th code point (libpg-query's syntax error cursor counts code points). */
  indexOfCodePoint(codePoint: number): number {
    let index = 0;
    for (let n = 0; n < codePoint && index < this.text.length; n++) {
      const unit = this.text.charCodeAt(index);
      index += unit >= 0xd800 && unit <= 0xdbff ? 2 : 1;
    }
    return index;
  }

  /** The text of one line (1-based), without its line break. */
  lineText(line: number): string {
    const start = this.lineStarts[line - 1] ?? this.text.length;
    const next = this.lineStarts[line];
    return this.text.slice(start, next === undefined ? undefined : next - 1).replace(/\r$/, '');
  }
}

function buildUtf16Index(text: string, bytes: number): Int32Array {
  const map = new Int32Array(bytes + 1).fill(-1);
  let byte = 0;
  for (let index = 0; index < text.length; ) {
    map[byte] = index;
    const codePoint = text.codePointAt(index)!;
    byte += codePoint < 0x80 ? 1 : codePoint < 0x800 ? 2 : codePoint < 0x10000 ? 3 : 4;
    index += codePoint >= 0x10000 ? 2 : 1;
  }
  map[bytes] = text.length;
  return map;
}
