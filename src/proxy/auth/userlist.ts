/**
 * PgBouncer's auth_file (userlist.txt), so that a team moving from PgBouncer keeps its file:
 *
 *     "user" "secret" anything else on the line is ignored
 *
 * Both fields are in double quotes, a double quote inside one is written twice. The secret is a plain
 * password, `md5<32 hex>` or a SCRAM-SHA-256 verifier (secret.ts). Blank lines and lines starting with
 * `;` or `#` are comments.
 */
import { readFile } from 'node:fs/promises';
import { parseSecret, SecretFormatError, type Secret } from './secret.js';

export type Userlist = ReadonlyMap<string, Secret>;

/**
 * A line that is not `"user" "secret"`. Its message names the file and line and what is wrong there,
 * never the line's text: that would put a password in a log.
 */
export class UserlistError extends Error {
  constructor(
    readonly file: string,
    readonly line: number,
    readonly reason: string,
  ) {
    super(`${file}:${line}: ${reason}`);
    this.name = 'UserlistError';
  }
}

export async function loadUserlist(file: string): Promise<Userlist> {
  return parseUserlist(await readFile(file, 'utf8'), file);
}

/** `file` only names the source in errors. A user listed twice gets the later secret, as in PgBouncer. */
export function parseUserlist(text: string, file: string): Userlist {
  const users = new Map<string, Secret>();
  text.split(/\r?\n/).forEach((content, index) => {
    const entry = parseLine(content, (reason) => new UserlistError(file, index + 1, reason));
    if (entry) users.set(entry.user, entry.secret);
  });
  return users;
}

function parseLine(line: string, error: (reason: string) => UserlistError): { user: string; secret: Secret } | undefined {
  let offset = skipSpace(line, 0);
  if (offset === line.length || line[offset] === ';' || line[offset] === '#') return undefined;
  const user = readQuoted(line, offset, 'user name', error);
  if (user.value === '') throw error('the user name is empty');
  offset = skipSpace(line, user.next);
  if (offset === user.next && offset < line.length) throw error('expected white space after the user name');
  // Not named here: with the space between the fields missing ("user""secret"), the one field read
  // as a user name holds the secret.
  if (offset === line.length) throw error('only one field: expected "user" "secret"');
  const secret = readQuoted(line, offset, `secret of user "${user.value}"`, error);
  try {
    return { user: user.value, secret: parseSecret(secret.value) };
  } catch (cause) {
    if (cause instanceof SecretFormatError) throw error(`user "${user.value}": ${cause.message}`);
    throw cause;
  }
}

function readQuoted(line: string, start: number, what: string, error: (reason: string) => UserlistError): { value: string; next: number } {
  if (line[start] !== '"') throw error(`expected the ${what} in double quotes`);
  let value = '';
  let offset = start + 1;
  for (;;) {
    const quote = line.indexOf('"', offset);
    if (quote < 0) throw error(`the ${what} has no closing double quote`);
    value += line.slice(offset, quote);
    if (line[quote + 1] !== '"') return { value, next: quote + 1 };
    value += '"';
    offset = quote + 2;
  }
}

function skipSpace(line: string, offset: number): number {
  while (offset < line.length && (line[offset] === ' ' || line[offset] === '\t')) offset++;
  return offset;
}
