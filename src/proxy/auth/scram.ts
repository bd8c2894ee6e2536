/**
 * SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it, both ways:
 *
 * - ScramServerExchange authenticates a client against a stored verifier (or a plain password made
 *   into one), answering malformed or channel-binding messages as a PostgreSQL server without TLS
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
  // eslint-disable-next-line no-control-regex
  if (/^[\x00-\x7f]*$/.test(password)) return password;
  return password
    .replace(/[\u00a0\u1680\u2000-\u200b\u202f\u205f\u3000]/g, ' ')
    // eslint-disable-next-line no-misleading-character-class
    .replace(/[\u00ad\u034f\u1806\u180b-\u180d\u200c\u200d\u2060\ufe00-\ufe0f\ufeff]/g, '')
    .normalize('NFKC');
}

function keysFromPassword(password: string, salt: Buffer, iterations: number): ScramKeys {
  const salted = pbkdf2Sync(Buffer.from(saslPrep(password), 'utf8'), salt, iterations, SCRAM_KEY_LENGTH, 'sha256');
  return { clientKey: hmac(salted, 'Client Key'), serverKey: hmac(salted, 'Server Key') };
}

/** A verifier for a plain password, as PostgreSQL would store it (a fresh random salt unless given). */
export function scramSecretFromPassword(password: string, salt = randomBytes(SALT_LENGTH), iterations = DEFAULT_SCRAM_ITERATIONS): ScramSecret {
  const { clientKey, serverKey } = keysFromPassword(password, salt, iterations);
  return { kind: 'scram', iterations, salt, storedKey: sha256(clientKey), serverKey };
}

/** `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, the text PostgreSQL stores. */
export function formatScramSecret(secret: ScramSecret): string {
  const b64 = (data: Buffer) => data.toString('base64');
  return `SCRAM-SHA-256$${secret.iterations}:${b64(secret.salt)}$${b64(secret.storedKey)}:${b64(secret.serverKey)}`;
}

/** Per-process key for mock salts: stable for a user name while the proxy runs, unguessable outside it. */
const MOCK_SALT_KEY = randomBytes(32);

/**
 * A verifier no proof can match, for a user with no usable secret. Going through the whole exchange
 * with it, as PostgreSQL does, and failing at the end with the usual message means a client cannot
 * tell an unknown user from a wrong password; the salt is stable per user name, as a real one is.
 */
export function mockScramSecret(user: string): ScramSecret {
  return {
    kind: 'scram',
    iterations: DEFAULT_SCRAM_ITERATIONS,
    salt: hmac(MOCK_SALT_KEY, user).subarray(0, SALT_LENGTH),
    storedKey: randomBytes(SCRAM_KEY_LENGTH),
    serverKey: randomBytes(SCRAM_KEY_LENGTH),
  };
}

/** A nonce made of printable ASCII other than ',' (RFC 5802), here base64 of random bytes. */
const newNonce = (): string => randomBytes(NONCE_LENGTH).toString('base64');
const PRINTABLE_NONCE = /^[\x21-\x2b\x2d-\x7e]+$/;

export type ScramServerStep<T> = ({ ok: true } & T) | { ok: false; error: ErrorFields };

type ServerState =
  | { phase: 'first' }
  | { phase: 'final'; gs2Header: string; nonce: string; clientFirstBare: string; serverFirst: string }
  | { phase: 'done' };

/** The server side of one client's SCRAM login. */
export class ScramServerExchange {
  private state: ServerState = { phase: 'first' };

  /**
   * `doomed`: the secret is a mock (mockScramSecret) and the login must fail at the end whatever the
   * client proves, without the client noticing earlier.
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
    // The proxy offers only SCRAM-SHA-256: it has no channel to bind (SCRAM-SHA-256-PLUS) to.
    if (mechanism !== SCRAM_SHA_256) {
      return { ok: false, error: { severity: 'FATAL', code: '08P01', message: 'client selected an invalid SASL authentication mechanism' } };
    }
    const text = data.toString('utf8');
    if (text.length === 0) return { ok: false, error: malformedScramMessage('The message is empty.') };
    const flag = text[0]!;
    let gs2End: number;
    if (flag === 'n' || flag === 'y') {
      // 'y': the client could bind a channel but saw no offer of it. A server that offers binding
      // must refuse that as a downgrade; we never offer it, so, like PostgreSQL without TLS, accept.
      if (text[1] !== ',') return { ok: false, error: malformedScramMessage(`Comma expected, but found character "${text[1] ?? ''}".`) };
      gs2End = 2;
    } else if (flag === 'p') {
      return { ok: false, error: malformedScramMessage('The client selected SCRAM-SHA-256 without channel binding, but the SCRAM message includes channel binding data.') };
    } else {
      return { ok: false, error: malformedScramMessage(`Unexpected channel-binding flag "${flag}".`) };
    }
    if (text[gs2End] === 'a') return { ok: false, error: { severity: 'FATAL', code: '0A000', message: 'client uses authorization identity, but it is not supported' } };
    if (text[gs2End] !== ',') return { ok: false, error: malformedScramMessage(`Unexpected attribute "${text[gs2End] ?? ''}" in client-first-message.`) };
    const gs2Header = text.slice(0, gs2End + 1);
    const clientFirstBare = text.slice(gs2End + 1);
    if (clientFirstBare.startsWith('m')) return { ok: false, error: { severity: 'FATAL', code: '0A000', message: 'client requires an unsupported SCRAM extension' } };
    const attributes = clientFirstBare.split(',');
    if (!attributes[0]?.startsWith('n=')) return { ok: false, error: malformedScramMessage('Expected attribute "n" in client-first-message.') };
    const clientNonce = attributes[1]?.startsWith('r=') ? attributes[1].slice(2) : undefined;
    if (clientNonce === undefined) return { ok: false, error: malformedScramMessage('Expected attribute "r" in client-first-message.') };
    if (!PRINTABLE_NONCE.test(clientNonce)) return { ok: false, error: malformedScramMessage('non-printable characters in SCRAM nonce') };

    const nonce = clientNonce + newNonce();
    const serverFirst = `r=${nonce},s=${this.secret.salt.toString('base64')},i=${this.secret.iterations}`;
    this.state = { phase: 'final', gs2Header, nonce, clientFirstBare, serverFirst };
    return { ok: true, serverFirst: Buffer.from(serverFirst, 'utf8') };
  }

  /**
   * SASLResponse: the client-final-message. On success, server-final (for AuthenticationSASLFinal)
   * and the client's ClientKey, which logs in to a server that stores the same verifier.
   */
  clientFinal(data: Buffer): ScramServerStep<{ serverFinal: Buffer; clientKey: Buffer }> {
    const state = this.state;
    if (state.phase !== 'final') return { ok: false, error: malformedScramMessage('invalid SCRAM exchange state') };
    this.state = { phase: 'done' };
    const text = data.toString('utf8');
    const proofAt = text.lastIndexOf(',p=');
    const attributes = text.split(',');
    if (!attributes[0]?.startsWith('c=')) return { ok: false, error: malformedScramMessage('Expected attribute "c" in client-final-message.') };
    if (attributes[0].slice(2) !== Buffer.from(state.gs2Header, 'utf8').toString('base64')) {
      return { ok: false, error: { severity: 'FATAL', code: '08P01', message: 'SCRAM channel binding check failed' } };
    }
    if (attributes[1] !== `r=${state.nonce}`) return { ok: false, error: malformedScramMessage('Nonce does not match.') };
    if (proofAt < 0) return { ok: false, error: malformedScramMessage('Expected attribute "p" in client-final-message.') };
    const proofText = text.slice(proofAt + 3);
    const proof = Buffer.from(proofText, 'base64');
    if (proof.length !== SCRAM_KEY_LENGTH || proof.toString('base64') !== proofText) {
      return { ok: false, error: malformedScramMessage('malformed proof in client-final-message') };
    }
    const authMessage = `${state.clientFirstBare},${state.serverFirst},${text.slice(0, proofAt)}`;
    const clientKey = xor(proof, hmac(this.secret.storedKey, authMessage));
    const matches = timingSafeEqual(sha256(clientKey), this.secret.storedKey);
    if (!matches || this.doomed) return { ok: false, error: passwordAuthenticationFailed(this.user) };
    return { ok: true, serverFinal: Buffer.from(`v=${hmac(this.secret.serverKey, authMessage).toString('base64')}`, 'utf8'), clientKey };
  }
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
