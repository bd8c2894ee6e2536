/**
 * The proxy's own authentication parts (src/proxy/auth), against a real PostgreSQL and a real client
 * implementation (node-postgres's SASL and md5 functions): logging in to the server with a password,
 * a stored md5 hash or SCRAM keys; authenticating clients against the verifiers PostgreSQL stores;
 * answering bad SCRAM messages as PostgreSQL does; looking secrets up with the auth query.
 */
import { createRequire } from 'node:module';
import net from 'node:net';
import { beforeAll, describe, expect, it } from 'vitest';
import { AuthQuery, AUTH_QUERY_SEARCH_PATH } from '../../src/proxy/auth/auth-query.js';
import { passwordAuthenticationFailed } from '../../src/proxy/auth/failure.js';
import { authenticationData, encodeSASLInitialResponse, encodeSASLResponse } from '../../src/proxy/auth/messages.js';
import { md5Hash, md5Salt, verifyMd5Response } from '../../src/proxy/auth/md5.js';
import { ScramServerExchange, formatScramSecret, mockScramSecret, scramSecretForPlainPassword, scramSecretFromPassword } from '../../src/proxy/auth/scram.js';
import { exchangeFor, parseSecret, type ScramSecret, type Secret } from '../../src/proxy/auth/secret.js';
import { ServerError, ServerSession, type ServerLogin } from '../../src/proxy/auth/server-session.js';
import { FrameReader } from '../../src/proxy/protocol/frames.js';
import { MessageType, PROTOCOL_3_0, encodeErrorResponse, encodeStartupMessage, parseErrorFields } from '../../src/proxy/protocol/messages.js';
import { upstreamTarget } from '../../src/proxy/upstream.js';
import { usePostgres } from '../support/harness.js';
import { databaseOf } from './support.js';

/** node-postgres's own client side of SCRAM and md5 (CommonJS, no type declarations). */
interface PgSaslSession {
  mechanism: string;
  response: string;
}
const require = createRequire(import.meta.url);
const pgSasl = require('pg/lib/crypto/sasl.js') as {
  startSession(mechanisms: string[], stream?: unknown): PgSaslSession;
  continueSession(session: PgSaslSession, password: string, serverData: string, stream?: unknown): Promise<void>;
  finalizeSession(session: PgSaslSession, serverData: string): void;
};
const pgCrypto = require('pg/lib/crypto/utils.js') as { postgresMd5PasswordHash(user: string, password: string, salt: Buffer): Promise<string> };

const PASSWORD = 'correct horse';
const SCRAM_USER = 'tandem_scram';
const MD5_USER = 'tandem_md5';
/** SASLprep changes it: a no-break space becomes a space, the "ﬁ" ligature "fi" (NFKC). */
const UNICODE_PASSWORD = 'ﬁne\u00a0dåy';

describe('proxy authentication parts', () => {
  const pg = usePostgres();
  let storedScram: ScramSecret;
  let storedMd5: Secret;

  beforeAll(async () => {
    const server = pg.server;
    await server.admin(`SET password_encryption = 'md5'; CREATE ROLE ${MD5_USER} LOGIN PASSWORD '${PASSWORD}'`);
    await server.admin(`SET password_encryption = 'scram-sha-256'; CREATE ROLE ${SCRAM_USER} LOGIN PASSWORD '${PASSWORD}'; CREATE ROLE tandem_nopass LOGIN;
      CREATE ROLE tandem_unicode LOGIN PASSWORD '${UNICODE_PASSWORD}'`);
    await server.addHbaRules([`host all ${MD5_USER} 127.0.0.1/32 md5`, `host all ${SCRAM_USER} 127.0.0.1/32 scram-sha-256`, 'host all tandem_nopass 127.0.0.1/32 scram-sha-256', 'host all tandem_unicode 127.0.0.1/32 scram-sha-256']);
    const stored = async (user: string) => (await server.admin(`SELECT rolpassword FROM pg_authid WHERE rolname = '${user}'`)).rows[0]!.rolpassword as string;
    storedScram = parseSecret(await stored(SCRAM_USER)) as ScramSecret;
    storedMd5 = parseSecret(await stored(MD5_USER));
    expect(storedScram.kind).toBe('scram');
    expect(storedMd5).toEqual({ kind: 'md5', hash: md5Hash(MD5_USER, PASSWORD) });
  });

  const target = () => upstreamTarget(pg.url, 10_000);
  const database = () => databaseOf(pg.url);
  async function currentUser(login: Omit<ServerLogin, 'database'>): Promise<string | null | undefined> {
    const session = await ServerSession.open(target(), { ...login, database: database() });
    try {
      return (await session.query('SELECT current_user'))[0]?.[0];
    } finally {
      session.close();
    }
  }

  it('logs in to PostgreSQL with a password (SCRAM, md5) or only the stored md5 hash, and reports its refusal as is', async () => {
    expect(await currentUser({ user: SCRAM_USER, secret: { kind: 'plain', password: PASSWORD } })).toBe(SCRAM_USER);
    expect(await currentUser({ user: MD5_USER, secret: { kind: 'plain', password: PASSWORD } })).toBe(MD5_USER);
    expect(await currentUser({ user: MD5_USER, secret: storedMd5 })).toBe(MD5_USER);
    expect(await currentUser({ user: 'tandem_unicode', secret: { kind: 'plain', password: UNICODE_PASSWORD } })).toBe('tandem_unicode');
    expect(await currentUser({ user: 'tandem_unicode', secret: { kind: 'plain', password: 'fine dåy' } })).toBe('tandem_unicode');
    const refused = await currentUser({ user: SCRAM_USER, secret: { kind: 'plain', password: 'wrong' } }).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(ServerError);
    // The proxy's own refusal is word for word the server's (its S, V, C and M fields; the rest name server source lines).
    const fields = Object.fromEntries(['S', 'V', 'C', 'M'].map((tag) => [tag, (refused as ServerError).fields.get(tag)]));
    expect(fields).toEqual(Object.fromEntries(parseErrorFields(encodeErrorResponse(passwordAuthenticationFailed(SCRAM_USER)).subarray(5))));
    // A SCRAM verifier alone cannot log in: SCRAM needs ClientKey, which the verifier does not hold.
    await expect(currentUser({ user: SCRAM_USER, secret: storedScram })).rejects.toThrow(/asks user "tandem_scram" for SCRAM-SHA-256, and the proxy has a SCRAM verifier/);
  });

  /** Runs node-postgres's client side of SCRAM against ours; resolves with the ClientKey, or the error sent. */
  async function pgClientLogin(server: ScramServerExchange, password: string) {
    const session = pgSasl.startSession(['SCRAM-SHA-256']);
    const first = server.clientFirst(session.mechanism, Buffer.from(session.response));
    if (!first.ok) return first;
    await pgSasl.continueSession(session, password, first.serverFirst.toString());
    const final = server.clientFinal(Buffer.from(session.response));
    if (final.ok) pgSasl.finalizeSession(session, final.serverFinal.toString());
    return final;
  }

  it('authenticates a pg client against the verifier PostgreSQL stored, and logs in to the server with the recovered ClientKey', async () => {
    const refused = await pgClientLogin(new ScramServerExchange(SCRAM_USER, storedScram), 'wrong');
    expect(refused).toEqual({ ok: false, error: passwordAuthenticationFailed(SCRAM_USER) });

    const accepted = await pgClientLogin(new ScramServerExchange(SCRAM_USER, storedScram), PASSWORD);
    expect(accepted.ok).toBe(true);
    const unicode = parseSecret((await pg.server.admin("SELECT rolpassword FROM pg_authid WHERE rolname = 'tandem_unicode'")).rows[0]!.rolpassword as string) as ScramSecret;
    expect((await pgClientLogin(new ScramServerExchange('tandem_unicode', unicode), UNICODE_PASSWORD)).ok).toBe(true);
    const clientKey = (accepted as { clientKey: Buffer }).clientKey;
    // Pass-through: the client's ClientKey and the stored ServerKey log in to the server, no password known.
    expect(await currentUser({ user: SCRAM_USER, scramKeys: { clientKey, serverKey: storedScram.serverKey } })).toBe(SCRAM_USER);
    // A wrong ClientKey is refused by the server.
    await expect(currentUser({ user: SCRAM_USER, scramKeys: { clientKey: Buffer.alloc(32), serverKey: storedScram.serverKey } })).rejects.toMatchObject({ code: '28P01' });
  });

  it('authenticates with a plain secret, and fails a mock secret exactly like a wrong password', async () => {
    const plain = scramSecretForPlainPassword(SCRAM_USER, PASSWORD);
    expect(scramSecretForPlainPassword(SCRAM_USER, PASSWORD)).toEqual(plain);
    expect(scramSecretForPlainPassword(MD5_USER, PASSWORD).salt).not.toEqual(plain.salt);
    expect((await pgClientLogin(new ScramServerExchange(SCRAM_USER, plain), PASSWORD)).ok).toBe(true);
    expect(await pgClientLogin(new ScramServerExchange(SCRAM_USER, plain), 'wrong')).toEqual({ ok: false, error: passwordAuthenticationFailed(SCRAM_USER) });
    // A verifier made the way PostgreSQL makes one reads back as the same secret, and matches the server's for that salt.
    expect(parseSecret(formatScramSecret(plain))).toEqual(plain);
    expect(scramSecretFromPassword(PASSWORD, storedScram.salt, storedScram.iterations)).toEqual(storedScram);

    // Unknown user: the exchange runs to the end, with a salt stable per name, then the usual refusal.
    const mock = mockScramSecret('nobody');
    expect(mockScramSecret('nobody').salt).toEqual(mock.salt);
    expect(mockScramSecret('somebody').salt).not.toEqual(mock.salt);
    expect(await pgClientLogin(new ScramServerExchange('nobody', mock, true), PASSWORD)).toEqual({ ok: false, error: passwordAuthenticationFailed('nobody') });
    // Doomed even with the right proof (SCRAM asked, only an md5 hash stored, as exchangeFor says).
    expect(exchangeFor('scram-sha-256', storedMd5)).toBe('scram-doomed');
    expect(exchangeFor('md5', storedScram)).toBe('scram');
    expect(exchangeFor('md5', storedMd5)).toBe('md5');
    expect(await pgClientLogin(new ScramServerExchange(SCRAM_USER, plain, true), PASSWORD)).toEqual({ ok: false, error: passwordAuthenticationFailed(SCRAM_USER) });
  });

  type Answer = { code: string; message: string; detail?: string } | undefined;
  const answerOf = (fields: { code: string; message: string; detail?: string }): Answer => ({ code: fields.code, message: fields.message, ...(fields.detail ? { detail: fields.detail } : {}) });

  /**
   * What the real server answers a SASLInitialResponse with and, if it goes on, a SASLResponse made
   * from its server-first (`{nonce}` stands for the combined nonce): error fields, or undefined.
   */
  async function serverAnswer(mechanism: string, first: string, final?: (nonce: string) => string): Promise<Answer> {
    const socket = net.connect({ host: pg.server.host, port: pg.server.port });
    const reader = new FrameReader(1 << 20);
    socket.write(encodeStartupMessage(PROTOCOL_3_0, [['user', SCRAM_USER], ['database', database()]]));
    try {
      for (let sent = 0; ; ) {
        const frame = reader.nextTyped();
        if (!frame) {
          await new Promise((resolve) => socket.once('data', (chunk: Buffer) => resolve(reader.push(chunk))));
          continue;
        }
        if (frame.type === MessageType.ErrorResponse) {
          const fields = parseErrorFields(frame.body);
          return answerOf({ code: fields.get('C')!, message: fields.get('M')!, detail: fields.get('D') });
        }
        if (sent === 0) socket.write(encodeSASLInitialResponse(mechanism, Buffer.from(first)));
        else if (sent === 1 && final) {
          const nonce = /r=([^,]+)/.exec(authenticationData(frame.body).toString())![1]!;
          socket.write(encodeSASLResponse(Buffer.from(final(nonce))));
        } else return undefined;
        sent++;
      }
    } finally {
      socket.destroy();
    }
  }

  function ourAnswer(mechanism: string, first: string, final?: (nonce: string) => string): Answer {
    const exchange = new ScramServerExchange(SCRAM_USER, storedScram);
    const started = exchange.clientFirst(mechanism, Buffer.from(first));
    if (!started.ok) return answerOf(started.error);
    if (!final) return undefined;
    const nonce = /r=([^,]+)/.exec(started.serverFirst.toString())![1]!;
    const finished = exchange.clientFinal(Buffer.from(final(nonce)));
    return finished.ok ? undefined : answerOf(finished.error);
  }

  it('answers channel binding and malformed messages as PostgreSQL without TLS does', async () => {
    const firsts: Array<[mechanism: string, data: string]> = [
      ['SCRAM-SHA-256', 'p=tls-server-end-point,,n=,r=abcdef'],
      ['SCRAM-SHA-256-PLUS', 'p=tls-server-end-point,,n=,r=abcdef'],
      ['SCRAM-SHA-256', 'x,,n=,r=abcdef'],
      ['SCRAM-SHA-256', 'nx,n=,r=abcdef'],
      ['SCRAM-SHA-256', 'y'],
      ['SCRAM-SHA-256', 'n,b,n=,r=abcdef'],
      ['SCRAM-SHA-256', 'n, ,n=,r=abcdef'],
      ['SCRAM-SHA-256', 'n,a=admin,n=,r=abcdef'],
      ['SCRAM-SHA-256', 'n,,m=ext,n=,r=abcdef'],
      ['SCRAM-SHA-256', 'n,,x=,r=abcdef'],
      ['SCRAM-SHA-256', 'n,,n,r=abcdef'],
      ['SCRAM-SHA-256', 'n,,n='],
      ['SCRAM-SHA-256', 'n,,n=,r=abc\x01def'],
      ['SCRAM-SHA-256', 'n,,n=,r=abcdef,1=x'],
      ['SCRAM-SHA-256', 'n,,n=,r=abcdef,z'],
      ['SCRAM-SHA-256', ''],
      ['SCRAM-SHA-256', 'n,,n=,r=abc\0def'],
    ];
    for (const [mechanism, data] of firsts) {
      const ours = ourAnswer(mechanism, data);
      expect(ours, JSON.stringify(data)).toBeDefined();
      expect(ours, `${mechanism} ${JSON.stringify(data)}`).toEqual(await serverAnswer(mechanism, data));
    }
    // "y" (the client could bind, but saw no offer): accepted, as by a server that cannot bind either.
    expect(await serverAnswer('SCRAM-SHA-256', 'y,,n=,r=abcdef')).toBeUndefined();
    const withStream = pgSasl.startSession(['SCRAM-SHA-256'], {});
    expect(withStream.response.startsWith('y,,')).toBe(true);
    expect(ourAnswer(withStream.mechanism, withStream.response)).toBeUndefined();

    const proof = Buffer.alloc(32).toString('base64');
    const finals: Array<(nonce: string) => string> = [
      (nonce) => `c=eSws,r=${nonce},p=${proof}`,
      (nonce) => `c=biws,r=${nonce},p=abc`,
      (nonce) => `c=biws,r=${nonce},p=${proof},x=1`,
      (nonce) => `c=biws,r=${nonce}x,p=${proof}`,
      (nonce) => `c=biws,r=${nonce}`,
      () => 'x=biws',
      // Well formed, extension included, wrong proof: the usual refusal.
      (nonce) => `c=biws,r=${nonce},e=ext,p=${proof}`,
    ];
    for (const final of finals) {
      const ours = ourAnswer('SCRAM-SHA-256', 'n,,n=,r=abcdef', final);
      expect(ours, final('NONCE')).toBeDefined();
      expect(ours, final('NONCE')).toEqual(await serverAnswer('SCRAM-SHA-256', 'n,,n=,r=abcdef', final));
    }
  });

  it('verifies md5 answers from node-postgres against a stored hash or a plain password', async () => {
    const salt = md5Salt();
    const answer = await pgCrypto.postgresMd5PasswordHash(MD5_USER, PASSWORD, salt);
    expect(verifyMd5Response(MD5_USER, storedMd5, salt, answer)).toBe(true);
    expect(verifyMd5Response(MD5_USER, { kind: 'plain', password: PASSWORD }, salt, answer)).toBe(true);
    expect(verifyMd5Response(MD5_USER, storedMd5, md5Salt(), answer)).toBe(false);
    expect(verifyMd5Response(MD5_USER, storedMd5, salt, await pgCrypto.postgresMd5PasswordHash(MD5_USER, 'wrong', salt))).toBe(false);
    expect(verifyMd5Response(MD5_USER, storedScram, salt, answer)).toBe(false);
  });

  it('looks secrets up with the auth query: bound user name, fixed search_path, missing user and NULL password alike', async () => {
    const lookup = new AuthQuery({ target: target(), login: { user: pg.server.user, database: database() } });
    try {
      expect(await lookup.lookUp(SCRAM_USER)).toEqual(storedScram);
      expect(await lookup.lookUp(MD5_USER)).toEqual(storedMd5);
      expect(await lookup.lookUp('tandem_nopass')).toBeUndefined();
      expect(await lookup.lookUp('nobody')).toBeUndefined();
      expect(await lookup.lookUp("nobody' OR usename <> '")).toBeUndefined();
    } finally {
      lookup.close();
    }
    // The connection's search_path is the fixed one, whatever the login; the query sees it.
    const probe = new AuthQuery({ target: target(), login: { user: pg.server.user, database: database() }, query: "SELECT $1::text, pg_catalog.current_setting('search_path')" });
    try {
      expect(await probe.lookUp('anyone')).toEqual({ kind: 'plain', password: AUTH_QUERY_SEARCH_PATH });
    } finally {
      probe.close();
    }
  });
});
