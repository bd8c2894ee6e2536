/**
 * The proxy authenticating a client itself, as a pooler must (a pooled server connection was logged
 * in long before this client came): trust, md5 or SCRAM-SHA-256 against the user's stored secret,
 * with PostgreSQL's rules and words (failure.ts), and what the pool then needs to log in to the
 * server as this user (the stored secret, or the SCRAM keys the client's proof reveals). In
 * passthrough it only collects the password, which the server then judges (passthrough.ts).
 */
import type { TypedFrame } from '../protocol/frames.js';
import { MessageType, encodeAuthenticationSASL, type ErrorFields } from '../protocol/messages.js';
import { passwordAuthenticationFailed } from './failure.js';
import { md5Salt, verifyMd5Response } from './md5.js';
import { encodeAuthenticationCleartextPassword, encodeAuthenticationMD5Password, encodeAuthenticationSASLContinue, encodeAuthenticationSASLFinal, parsePasswordMessage, parseSASLInitialResponseData } from './messages.js';
import { SCRAM_SHA_256, ScramServerExchange, mockScramSecret, scramSecretForPlainPassword, type ScramKeys } from './scram.js';
import { exchangeFor, type PasswordAuthType, type Secret } from './secret.js';

/** `--auth-type` in the pooled modes (PgBouncer's names). */
export type AuthType = 'trust' | PasswordAuthType | 'passthrough';
export const AUTH_TYPES: readonly AuthType[] = ['trust', 'md5', 'scram-sha-256', 'passthrough'];

/** How the pool logs in to the server as the authenticated user. */
export interface ServerCredentials {
  secret?: Secret;
  scramKeys?: ScramKeys;
}

export type ClientAuthStep =
  /** Send these bytes and wait for the client's next message. */
  | { next: 'send'; bytes: Buffer }
  /** Authenticated; `bytes` (possibly empty) go out before AuthenticationOk. */
  | { next: 'ok'; bytes: Buffer; credentials: ServerCredentials }
  /** Passthrough: the client's password, for the server to accept or refuse. */
  | { next: 'check'; password: string }
  | { next: 'fail'; error: ErrorFields };

type State =
  | { phase: 'cleartext' }
  | { phase: 'md5'; salt: Buffer }
  | { phase: 'sasl-initial'; exchange: ScramServerExchange; secret: Secret | undefined }
  | { phase: 'sasl-final'; exchange: ScramServerExchange; secret: Secret | undefined }
  | { phase: 'done' };

export class ClientAuthenticator {
  private state: State = { phase: 'done' };

  /** `secret` undefined: the user is unknown or has no password; a password login then fails like a wrong password. */
  constructor(
    private readonly user: string,
    private readonly authType: AuthType,
    private readonly secret: Secret | undefined,
  ) {}

  start(): ClientAuthStep {
    const secret = this.secret;
    if (this.authType === 'trust') return { next: 'ok', bytes: Buffer.alloc(0), credentials: secret ? { secret } : {} };
    if (this.authType === 'passthrough') {
      this.state = { phase: 'cleartext' };
      return { next: 'send', bytes: encodeAuthenticationCleartextPassword() };
    }
    const exchange = secret ? exchangeFor(this.authType, secret) : 'scram-doomed';
    if (exchange === 'md5') {
      const salt = md5Salt();
      this.state = { phase: 'md5', salt };
      return { next: 'send', bytes: encodeAuthenticationMD5Password(salt) };
    }
    const verifier =
      exchange === 'scram-doomed' || !secret ? mockScramSecret(this.user) : secret.kind === 'scram' ? secret : secret.kind === 'plain' ? scramSecretForPlainPassword(this.user, secret.password) : mockScramSecret(this.user);
    this.state = { phase: 'sasl-initial', exchange: new ScramServerExchange(this.user, verifier, exchange === 'scram-doomed'), secret };
    return { next: 'send', bytes: encodeAuthenticationSASL([SCRAM_SHA_256]) };
  }

  fromClient(frame: TypedFrame): ClientAuthStep {
    const state = this.state;
    if (frame.type !== MessageType.PasswordFamily || state.phase === 'done') {
      return { next: 'fail', error: { severity: 'FATAL', code: '08P01', message: `expected password response, got message type ${frame.type}` } };
    }
    this.state = { phase: 'done' };
    switch (state.phase) {
      case 'cleartext':
        return { next: 'check', password: parsePasswordMessage(frame.body) };
      case 'md5': {
        const response = parsePasswordMessage(frame.body);
        if (!this.secret || !verifyMd5Response(this.user, this.secret, state.salt, response)) return { next: 'fail', error: passwordAuthenticationFailed(this.user) };
        return { next: 'ok', bytes: Buffer.alloc(0), credentials: { secret: this.secret } };
      }
      case 'sasl-initial': {
        const { mechanism, data } = parseSASLInitialResponseData(frame.body);
        const step = state.exchange.clientFirst(mechanism, data);
        if (!step.ok) return { next: 'fail', error: step.error };
        this.state = { phase: 'sasl-final', exchange: state.exchange, secret: state.secret };
        return { next: 'send', bytes: encodeAuthenticationSASLContinue(step.serverFirst) };
      }
      case 'sasl-final': {
        const step = state.exchange.clientFinal(frame.body);
        if (!step.ok) return { next: 'fail', error: step.error };
        const secret = state.secret;
        // A plain password logs in anywhere; a verifier only through the keys this proof revealed.
        const credentials: ServerCredentials =
          secret?.kind === 'scram' ? { scramKeys: { clientKey: step.clientKey, serverKey: secret.serverKey } } : secret ? { secret } : {};
        return { next: 'ok', bytes: encodeAuthenticationSASLFinal(step.serverFinal), credentials };
      }
    }
  }
}
