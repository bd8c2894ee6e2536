/**
 * SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it, both ways:
 *
 * - ScramServerExchange authenticates a client against a stored verifier (or a plain password made
 *   into one, scramSecretForPlainPassword), answering malformed or channel-binding messages as a PostgreSQL server without TLS
 *   channel binding does, and hands back the client's ClientKey once its proof checks out.
 * - ScramClientExchange logs in to a server with a password, or with only ClientKey and ServerKey:
 *   PgBouncer's SCRAM pass-through, where the keys recovered from a client's login open server
 *   connections for it without the proxy ever knowing the password.
 *
 * PostgreSQL ignores the user name inside SCRAM (the startup packet's counts), and so do we.
 */
import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';
import type { ErrorFields } from '../protocol/messages.js';
import { malformedScramMessage, passwordAuthenticationFailed } from './failure.js';
import { SCRAM_KEY_LENGTH, type ScramSecret } from './secret.js';

export const SCRAM_SHA_256 = 'SCRAM-SHA-256';
/** PostgreSQL's scram_iterations default, used for verifiers made from plain passwords. */
export const DEFAULT_SCRAM_ITERATIONS = 4096;
/** PostgreSQL's SCRAM_DEFAULT_SALT_LEN and SCRAM_RAW_NONCE_LEN. */
const SALT_LENGTH = 16;
const NONCE_LENGTH = 18;
/** A server asking a client to spend longer than this on PBKDF2 is more likely hostile than careful. */
const MAX_CLIENT_ITERATIONS = 100_000;

export interface ScramKeys {
  clientKey: Buffer;
  serverKey: Buffer;
}

const hmac = (key: Buffer, text: string | Buffer): Buffer => createHmac('sha256', key).update(text).digest();
const sha256 = (data: Buffer): Buffer => createHash('sha256').update(data).digest();

function xor(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.alloc(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! ^ b[i]!;
  return out;
}

/**
 * SASLprep's effect on the password bytes, as far as it changes them: non-ASCII spaces become spaces,
 * characters "mapped to nothing" go, then NFKC. ASCII passwords, by far the common case, pass
 * unchanged, as in PostgreSQL. (PostgreSQL falls back to the raw bytes where SASLprep prohibits a
 * character; we do not check prohibitions, so such rare passwords may differ.)
 */
export function saslPrep(password: string): string {
  if (/^[\x00-\x7f]*$/.test(password)) return password;
  return password
    .replace(/[\u00a0\u1680\u2000-\u200b\u202f\u205f\u3000]/g, ' ')
    .replace(/[\u00ad\u034f\u1806\u180b-\u180d\u200c\u200d\u2060\ufe00-\ufe0f\ufeff]/g, '')
    .normalize('NFKC');
}

/**
 * Keys derived lately, by a hash of (password, salt, iterations). PBKDF2 is deliberately slow (some
 * milliseconds at 4096 iterations, blocking the event loop), and a pooling proxy derives the same
 * keys again and again: each new server connection of a user, each login of a client whose secret
 * is a plain password. Bounded; the oldest entry goes first.
 */
const derivedKeys = new Map<string, ScramKeys>();
const MAX_DERIVED_KEYS = 1024;

function keysFromPassword(password: string, salt: Buffer, iterations: number): ScramKeys {
  const prepared = Buffer.from(saslPrep(password), 'utf8');
  const key = createHash('sha256').update(prepared).update('\0').update(salt).update(`\0${iterations}`).digest('base64');
  const known = derivedKeys.get(key);
  if (known) return known;
  const salted = pbkdf2Sync(prepared, salt, iterations, SCRAM_KEY_LENGTH, 'sha256');
  const keys = { clientKey: hmac(salted, 'Client Key'), serverKey: hmac(salted, 'Server Key') };
  if (derivedKeys.size >= MAX_DERIVED_KEYS) derivedKeys.delete(derivedKeys.keys().next().value!);
  derivedKeys.set(key, keys);
  return keys;
}

/** A verifier for a plain password, as PostgreSQL would store it (a fresh random salt unless given). */
export function scramSecretFromPassword(password: string, salt: Buffer = randomBytes(SALT_LENGTH), iterations = DEFAULT_SCRAM_ITERATIONS): ScramSecret {
  const { clientKey, serverKey } = keysFromPassword(password, salt, iterations);
  return { kind: 'scram', iterations, salt, storedKey: sha256(clientKey), serverKey };
}

/** `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, the text PostgreSQL stores. */
export function formatScramSecret(secret: ScramSecret): string {
  const b64 = (data: Buffer) => data.toString('base64');
  return `SCRAM-SHA-256$${secret.iterations}:${b64(secret.salt)}$${b64(secret.storedKey)}:${b64(secret.serverKey)}`;
}

/** Per-process key for made-up salts: stable for a user while the proxy runs, unguessable outside it. */
const SALT_KEY = randomBytes(32);

/**
 * The verifier to authenticate a client against when its secret is a plain password (an auth file
 * line with a password). Its salt is stable per user and password, as a stored verifier's is, so the
 * keys are derived once, not at every login; and it differs between users, so two users with the
 * same password do not show the same salt.
 */
export function scramSecretForPlainPassword(user: string, password: string): ScramSecret {
  const salt = hmac(SALT_KEY, `plain\0${user}\0${password}`).subarray(0, SALT_LENGTH);
  return scramSecretFromPassword(password, salt);
}

/**
 * A verifier no proof can match, for a user with no usable secret. Going through the whole exchange
 * with it, as PostgreSQL does, and failing at the end with the usual message means a client cannot
 * tell an unknown user from a wrong password; the salt is stable per user name, as a real one is.
 */
export function mockScramSecret(user: string): ScramSecret {
  return {
    kind: 'scram',
    iterations: DEFAULT_SCRAM_ITERATIONS,
    salt: hmac(SALT_KEY, `mock\0${user}`).subarray(0, SALT_LENGTH),
    storedKey: randomBytes(SCRAM_KEY_LENGTH),
    serverKey: randomBytes(SCRAM_KEY_LENGTH),
  };
}

/** A nonce made of printable ASCII other than ',' (RFC 5802), here base64 of random bytes. */
const newNonce = (): string => randomBytes(NONCE_LENGTH).toString('base64');
const PRINTABLE_NONCE = /^[\x21-\x2b\x2d-\x7e]*$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** A character in an error as PostgreSQL quotes it: 'x' when printable, else its code (the end of the text is 0x00). */
function quoteChar(char: string | undefined): string {
  const code = char?.charCodeAt(0) ?? 0;
  return code >= 0x21 && code <= 0x7e ? `'${char}'` : `0x${code.toString(16).padStart(2, '0')}`;
}

/** Ends a server step: the ErrorResponse the client gets. */
class Refusal extends Error {
  constructor(readonly fields: ErrorFields) {
    super(fields.message);
  }
}

const malformed = (detail: string) => new Refusal(malformedScramMessage(detail));

/**
 * Reads `attr=value` pairs separated by commas, with the checks and the wording of PostgreSQL's
 * read_attr_value and read_any_attr, so a broken client sees the errors it would see from the server.
 */
class AttributeReader {
  constructor(
    private readonly text: string,
    public at = 0,
  ) {}

  get atEnd(): boolean {
    return this.at >= this.text.length;
  }

  /** The value of the attribute that must come next. */
  expect(attr: string): string {
    const found = this.text[this.at];
    if (found !== attr) throw malformed(`Expected attribute "${attr}" but found "${quoteChar(found)}".`);
    return this.valueOf(attr);
  }

  /** Whatever attribute comes next. */
  any(): { attr: string; value: string } {
    const attr = this.text[this.at];
    if (attr === undefined) throw malformed('Attribute expected, but found end of string.');
    if (!/^[A-Za-z]$/.test(attr)) throw malformed(`Attribute expected, but found invalid character "${quoteChar(attr)}".`);
    return { attr, value: this.valueOf(attr) };
  }

  private valueOf(attr: string): string {
    if (this.text[this.at + 1] !== '=') throw malformed(`Expected character "=" for attribute "${attr}".`);
    const start = this.at + 2;
    const comma = this.text.indexOf(',', start);
    const end = comma < 0 ? this.text.length : comma;
    this.at = comma < 0 ? end : end + 1;
    return this.text.slice(start, end);
  }
}

export type ScramServerStep<T> = ({ ok: true } & T) | { ok: false; error: ErrorFields };

type ServerState =
  | { phase: 'first' }
  | { phase: 'final'; gs2Header: string; nonce: string; clientFirstBare: string; serverFirst: string }
  | { phase: 'done' };

/** The server side of one client's SCRAM login. */
export class ScramServerExchange {
  private state: ServerState = { phase: 'first' };

  /**
   * `doomed`: the secret is a mock (mockScramSecret), or cannot serve SCRAM, and the login must fail
   * at the end whatever the client proves, without the client noticing earlier.
   */
  constructor(
    private readonly user: string,
    private readonly secret: ScramSecret,
    private readonly doomed = false,
  ) {}

  /** SASLInitialResponse: the mechanism the client chose and its client-first-message. Returns server-first. */
  clientFirst(mechanism: string, data: Buffer): ScramServerStep<{ serverFirst: Buffer }> {
    if (this.state.phase !== 'first') return { ok: false, error: malformedScramMessage('invalid SCRAM exchange state') };
    this.state = { phase: 'done' };
    return step(() => {
      // The proxy offers only SCRAM-SHA-256: it has no channel to bind (SCRAM-SHA-256-PLUS) to.
      if (mechanism !== SCRAM_SHA_256) throw new Refusal({ severity: 'FATAL', code: '08P01', message: 'client selected an invalid SASL authentication mechanism' });
      const text = messageText(data);
      const flag = text[0]!;
      if (flag === 'p') throw malformed('The client selected SCRAM-SHA-256 without channel binding, but the SCRAM message includes channel binding data.');
      // 'y': the client could bind a channel but saw no offer of it. A server that offers binding
      // must refuse that as a downgrade; we never offer it, so, like PostgreSQL without TLS, accept.
      if (flag !== 'n' && flag !== 'y') throw malformed(`Unexpected channel-binding flag "${quoteChar(flag)}".`);
      if (text[1] !== ',') throw malformed(`Comma expected, but found character "${quoteChar(text[1])}".`);
      if (text[2] === 'a') throw new Refusal({ severity: 'FATAL', code: '0A000', message: 'client uses authorization identity, but it is not supported' });
      if (text[2] !== ',') throw malformed(`Unexpected attribute "${quoteChar(text[2])}" in client-first-message.`);
      const clientFirstBare = text.slice(3);
      if (clientFirstBare.startsWith('m')) throw new Refusal({ severity: 'FATAL', code: '0A000', message: 'client requires an unsupported SCRAM extension' });
      const reader = new AttributeReader(clientFirstBare);
      reader.expect('n');
      const clientNonce = reader.expect('r');
      if (!PRINTABLE_NONCE.test(clientNonce)) throw new Refusal({ severity: 'FATAL', code: '08P01', message: 'non-printable characters in SCRAM nonce' });
      while (!reader.atEnd) reader.any();

      const nonce = clientNonce + newNonce();
      const serverFirst = `r=${nonce},s=${this.secret.salt.toString('base64')},i=${this.secret.iterations}`;
      this.state = { phase: 'final', gs2Header: text.slice(0, 3), nonce, clientFirstBare, serverFirst };
      return { serverFirst: Buffer.from(serverFirst, 'utf8') };
    });
  }

  /**
   * SASLResponse: the client-final-message. On success, server-final (for AuthenticationSASLFinal)
   * and the client's ClientKey, which logs in to a server that stores the same verifier.
   */
  clientFinal(data: Buffer): ScramServerStep<{ serverFinal: Buffer; clientKey: Buffer }> {
    const state = this.state;
    if (state.phase !== 'final') return { ok: false, error: malformedScramMessage('invalid SCRAM exchange state') };
    this.state = { phase: 'done' };
    return step(() => {
      const text = messageText(data);
      const reader = new AttributeReader(text);
      if (reader.expect('c') !== Buffer.from(state.gs2Header, 'utf8').toString('base64')) {
        throw new Refusal({ severity: 'FATAL', code: '08P01', message: 'unexpected SCRAM channel-binding attribute in client-final-message' });
      }
      const nonce = reader.expect('r');
      let proofAt: number;
      let attribute: { attr: string; value: string };
      do {
        proofAt = reader.at - 1;
        attribute = reader.any();
      } while (attribute.attr !== 'p');
      const proof = Buffer.from(attribute.value, 'base64');
      if (!BASE64.test(attribute.value) || proof.length !== SCRAM_KEY_LENGTH) throw malformed('Malformed proof in client-final-message.');
      if (!reader.atEnd) throw malformed('Garbage found at the end of client-final-message.');
      if (nonce !== state.nonce) throw new Refusal({ severity: 'FATAL', code: '08P01', message: 'invalid SCRAM response', detail: 'Nonce does not match.' });

      const authMessage = `${state.clientFirstBare},${state.serverFirst},${text.slice(0, proofAt)}`;
      const clientKey = xor(proof, hmac(this.secret.storedKey, authMessage));
      if (!timingSafeEqual(sha256(clientKey), this.secret.storedKey) || this.doomed) throw new Refusal(passwordAuthenticationFailed(this.user));
      return { serverFinal: Buffer.from(`v=${hmac(this.secret.serverKey, authMessage).toString('base64')}`, 'utf8'), clientKey };
    });
  }
}

function step<T>(run: () => T): ScramServerStep<T> {
  try {
    return { ok: true, ...run() };
  } catch (error) {
    if (error instanceof Refusal) return { ok: false, error: error.fields };
    throw error;
  }
}

/** A SCRAM message as text; PostgreSQL refuses an empty one and one with a zero byte inside. */
function messageText(data: Buffer): string {
  if (data.length === 0) throw malformed('The message is empty.');
  if (data.includes(0)) throw malformed('Message length does not match input length.');
  return data.toString('utf8');
}

/** The server broke the SCRAM exchange, or failed to prove that it knows the verifier. */
export class ScramClientError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ScramClientError';
  }
}

export type ScramCredentials = { password: string } | ScramKeys;

type ClientState =
  | { phase: 'first' }
  | { phase: 'continue'; clientFirstBare: string }
  | { phase: 'final'; expectedServerSignature: Buffer }
  | { phase: 'done' };

/**
 * The client side of a SCRAM login to a server. Always gs2 flag "n": the proxy reaches the server
 * over its own connection and does not bind to it.
 */
export class ScramClientExchange {
  private state: ClientState = { phase: 'first' };
  private readonly nonce = newNonce();

  constructor(private readonly credentials: ScramCredentials) {}

  /** The SASLInitialResponse data. The user name is left empty, as libpq does. */
  clientFirst(): Buffer {
    if (this.state.phase !== 'first') throw new ScramClientError('SCRAM exchange already started');
    const clientFirstBare = `n=,r=${this.nonce}`;
    this.state = { phase: 'continue', clientFirstBare };
    return Buffer.from(`n,,${clientFirstBare}`, 'utf8');
  }

  /** Answers server-first (AuthenticationSASLContinue) with client-final. */
  clientFinal(serverFirstData: Buffer): Buffer {
    const state = this.state;
    if (state.phase !== 'continue') throw new ScramClientError('unexpected SCRAM server-first-message');
    this.state = { phase: 'done' };
    const serverFirst = serverFirstData.toString('utf8');
    const attributes = new Map(serverFirst.split(',').map((part) => [part.slice(0, 1), part.slice(2)] as const));
    const nonce = attributes.get('r');
    const salt = Buffer.from(attributes.get('s') ?? '', 'base64');
    const iterations = Number(attributes.get('i'));
    if (!nonce || !nonce.startsWith(this.nonce) || nonce.length === this.nonce.length || !PRINTABLE_NONCE.test(nonce)) {
      throw new ScramClientError('the server\'s SCRAM nonce does not extend ours');
    }
    if (salt.length === 0) throw new ScramClientError('the server sent no SCRAM salt');
    if (!Number.isInteger(iterations) || iterations < 1 || iterations > MAX_CLIENT_ITERATIONS) {
      throw new ScramClientError(`the server asked for ${attributes.get('i') ?? 'no'} SCRAM iterations`);
    }
    const keys = 'password' in this.credentials ? keysFromPassword(this.credentials.password, salt, iterations) : this.credentials;
    const withoutProof = `c=biws,r=${nonce}`;
    const authMessage = `${state.clientFirstBare},${serverFirst},${withoutProof}`;
    const proof = xor(keys.clientKey, hmac(sha256(keys.clientKey), authMessage));
    this.state = { phase: 'final', expectedServerSignature: hmac(keys.serverKey, authMessage) };
    return Buffer.from(`${withoutProof},p=${proof.toString('base64')}`, 'utf8');
  }

  /** Checks server-final (AuthenticationSASLFinal): the server must prove it holds the verifier too. */
  verifyServerFinal(serverFinalData: Buffer): void {
    const state = this.state;
    if (state.phase !== 'final') throw new ScramClientError('unexpected SCRAM server-final-message');
    this.state = { phase: 'done' };
    const text = serverFinalData.toString('utf8');
    if (text.startsWith('e=')) throw new ScramClientError(`the server refused the SCRAM login: ${text.slice(2)}`);
    const signature = Buffer.from(text.startsWith('v=') ? text.slice(2).split(',')[0]! : '', 'base64');
    if (signature.length !== SCRAM_KEY_LENGTH || !timingSafeEqual(signature, state.expectedServerSignature)) {
      throw new ScramClientError('the server\'s SCRAM signature does not match: it does not know this user\'s verifier');
    }
  }
}
