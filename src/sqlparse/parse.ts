/**
 * Parses a SQL file with libpg-query (PostgreSQL's own parser, compiled to WASM) into statements
 * that know where they are in the file. Lint and convert both start here.
 */
import { loadModule, parseSync, scanSync, type Node, type RawStmt } from 'libpg-query';
import { TandemError } from '../errors/index.js';
import { SourceText, type Position } from './source.js';

/** One lexical token. Offsets are UTF-8 bytes, as the parser reports them. */
export interface Token {
  start: number;
  end: number;
  text: string;
  /** True for SQL keywords of any class (reserved or not). */
  keyword: boolean;
  /** `--` and `/* *\/` comments are tokens too: lint reads directives from them. */
  comment: boolean;
}

export interface Statement {
  /** The statement node, e.g. `{ AlterTableStmt: {...} }`. */
  node: Node;
  /** The node's type name, e.g. `AlterTableStmt`. */
  kind: string;
  /** Byte offset of the statement's first token. */
  start: number;
  /** Byte offset just after its last token (a closing `;` is not part of it). */
  end: number;
  /** Index range of its tokens in `ParsedSql.tokens` (end exclusive). */
  firstToken: number;
  endToken: number;
}

export interface ParsedSql {
  file: string;
  source: SourceText;
  statements: Statement[];
  tokens: Token[];
}

export class SqlSyntaxError extends TandemError {
  readonly position: Position;
  constructor(message: string, file: string, position: Position) {
    super({ kind: 'sql_syntax', reason: message, position: { line: position.line, column: position.column } }, { file });
    this.name = 'SqlSyntaxError';
    this.position = position;
  }
  /** The parser's message without the position prefix. */
  get reason(): string {
    return this.fact.kind === 'sql_syntax' ? this.fact.reason : this.message;
  }
}

let loading: Promise<void> | undefined;

/** Loads the WASM parser once per process. */
export function loadParser(): Promise<void> {
  loading ??= loadModule();
  return loading;
}

export async function parseSql(text: string, file: string): Promise<ParsedSql> {
  await loadParser();
  const source = new SourceText(text);
  let raw: RawStmt[];
  try {
    // libpg-query refuses an empty string; a file of whitespace has no statements either way.
    raw = text.trim() === '' ? [] : (parseSync(text).stmts ?? []);
  } catch (error) {
    throw syntaxError(error, source, file);
  }
  const tokens = scan(text);
  const statements = raw.flatMap((one) => locate(one, tokens, source));
  return { file, source, statements, tokens };
}

function syntaxError(error: unknown, source: SourceText, file: string): TandemError {
  const details = (error as { sqlDetails?: { message?: string; cursorPosition?: number } }).sqlDetails;
  if (!details || typeof details.cursorPosition !== 'number') {
    return new TandemError({ kind: 'sql_syntax', reason: (error as Error).message }, { file, cause: error });
  }
  // The cursor counts code points from 0 (checked against libpg-query 18 in test/lint/parse.test.ts).
  const position = source.positionOfIndex(source.indexOfCodePoint(details.cursorPosition));
  return new SqlSyntaxError(details.message ?? (error as Error).message, file, position);
}

function scan(text: string): Token[] {
  if (text.trim() === '') return [];
  return (scanSync(text).tokens ?? []).map((token) => ({
    start: token.start,
    end: token.end,
    text: token.text,
    keyword: token.keywordKind !== 0,
    comment: token.tokenName === 'SQL_COMMENT' || token.tokenName === 'C_COMMENT',
  }));
}

/** Narrows a raw statement to its first and last real tokens (the parser's span includes leading comments). */
function locate(raw: RawStmt, tokens: Token[], source: SourceText): Statement[] {
  if (!raw.stmt) return [];
  const from = raw.stmt_location ?? 0;
  const to = raw.stmt_len ? from + raw.stmt_len : source.byteLength;
  let first = tokens.findIndex((token) => token.start >= from && !token.comment);
  if (first < 0) first = tokens.length;
  let endToken = first;
  for (let i = first; i < tokens.length && tokens[i]!.start < to; i++) {
    if (!tokens[i]!.comment && tokens[i]!.text !== ';') endToken = i + 1;
  }
  const kind = Object.keys(raw.stmt)[0]!;
  return [
    {
      node: raw.stmt,
      kind,
      start: tokens[first]?.start ?? from,
      end: tokens[endToken - 1]?.end ?? to,
      firstToken: first,
      endToken,
    },
  ];
}
