/**
 * Recovers the SQL text of parts of a statement (a DEFAULT expression, a CHECK condition, an
 * index predicate) from the source, token by token. libpg-query 17+ ships no deparser, and the
 * user's own text is the most faithful rendering anyway: it keeps their spelling and comments.
 * Node locations say where a part starts; the tokens and parenthesis depth say where it ends.
 */
import type { ParsedSql, Statement, Token } from './parse.js';

/** Index of the first token of `statement` starting at or after `byte`. */
export function tokenIndexAt(parsed: ParsedSql, statement: Statement, byte: number): number {
  const { tokens } = parsed;
  let low = statement.firstToken;
  let high = statement.endToken;
  while (low < high) {
    const middle = (low + high) >> 1;
    if (tokens[middle]!.start < byte) low = middle + 1;
    else high = middle;
  }
  return low;
}

/** The first token at or after `from` (within the statement) that is `word` (case-insensitive) at parenthesis depth 0. */
export function findToken(parsed: ParsedSql, statement: Statement, from: number, word: string): number | undefined {
  let depth = 0;
  const wanted = word.toLowerCase();
  for (let i = from; i < statement.endToken; i++) {
    const token = parsed.tokens[i]!;
    if (token.comment) continue;
    if (depth === 0 && token.text.toLowerCase() === wanted) return i;
    if (token.text === '(') depth++;
    else if (token.text === ')') depth--;
    if (depth < 0) return undefined;
  }
  return undefined;
}

/** Text of tokens [first, end), with the whitespace and comments between them as written. */
export function textOf(parsed: ParsedSql, first: number, end: number): string {
  if (end <= first) return '';
  return parsed.source.sliceBytes(parsed.tokens[first]!.start, parsed.tokens[end - 1]!.end);
}

/**
 * The text inside the parenthesis that opens at token `open` (which must be `(`), without the
 * parentheses; undefined when `open` is not a `(` or never closes.
 */
export function insideParentheses(parsed: ParsedSql, statement: Statement, open: number): { text: string; close: number } | undefined {
  if (parsed.tokens[open]?.text !== '(') return undefined;
  let depth = 0;
  for (let i = open; i < statement.endToken; i++) {
    const text = parsed.tokens[i]!.text;
    if (text === '(') depth++;
    else if (text === ')' && --depth === 0) return { text: textOf(parsed, open + 1, i), close: i };
  }
  return undefined;
}

/**
 * An expression starting at token `first` and running until, at parenthesis depth 0, a comma, a
 * closing parenthesis of the enclosing list, the end of the statement, or the first token at or
 * after `stopByte` (the start of whatever the parse tree says comes next).
 */
export function expressionFrom(parsed: ParsedSql, statement: Statement, first: number, stopByte = Infinity): { text: string; end: number } {
  let depth = 0;
  let end = first;
  for (let i = first; i < statement.endToken; i++) {
    const token: Token = parsed.tokens[i]!;
    if (token.start >= stopByte) break;
    if (token.comment) continue;
    if (token.text === '(' || token.text === '[') depth++;
    else if (token.text === ')' || token.text === ']') {
      if (depth === 0) break;
      depth--;
    } else if (depth === 0 && (token.text === ',' || token.text === ';')) break;
    end = i + 1;
  }
  return { text: textOf(parsed, first, end), end };
}

/**
 * The first token of each subcommand of an `ALTER TABLE name cmd, cmd, ...` statement, in order.
 * The parse tree gives subcommands no location, but they are the depth-0 comma-separated parts
 * after the table name, so findings can still point at the right one.
 */
export function alterCommandStarts(parsed: ParsedSql, statement: Statement, relationLocation: number | undefined): number[] {
  if (relationLocation === undefined) return [];
  const { tokens } = parsed;
  let i = tokenIndexAt(parsed, statement, relationLocation);
  // The (possibly qualified) name and an optional `*`.
  i++;
  while (i + 1 < statement.endToken && tokens[i]!.text === '.') i += 2;
  if (tokens[i]?.text === '*') i++;
  const starts = [i];
  let depth = 0;
  for (; i < statement.endToken; i++) {
    const text = tokens[i]!.text;
    if (text === '(') depth++;
    else if (text === ')') depth--;
    else if (text === ',' && depth === 0 && i + 1 < statement.endToken) starts.push(i + 1);
  }
  return starts;
}
