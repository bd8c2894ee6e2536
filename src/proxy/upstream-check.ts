/**
 * "Never silently on the wrong version": the proxy routes a client to its version by a `search_path`
 * startup parameter (routing.ts). Something between the proxy and PostgreSQL that drops startup
 * parameters (PgBouncer in transaction mode, RDS Proxy) would send every client to the bare tables
 * with no error. So, before serving versions through an upstream, the proxy opens one session there
 * with a probe search_path and asks what the session really has.
 */
import { randomBytes } from 'node:crypto';
import type { ErrorFields } from './protocol/messages.js';
import { ServerError, ServerSession, type ServerLogin } from './auth/server-session.js';
import { describeTarget, type UpstreamTarget } from './upstream.js';

export type UpstreamCheck = { ok: true } | { ok: false; failure: UpstreamCheckFailure };

export type UpstreamCheckFailure =
  /** The session opened, but without the search_path asked for: the parameter was dropped on the way. */
  | { cause: 'search_path_ignored'; upstream: string; expected: string; seen: string }
  /** The upstream refused the startup parameter outright (PgBouncer without ignore_startup_parameters). */
  | { cause: 'search_path_refused'; upstream: string; serverMessage: string };

/**
 * Opens one session as the proxy's sessions are opened, with a `search_path` nobody uses, and checks
 * `current_setting('search_path')` gives it back. Connection and login failures reject (they say
 * nothing about the upstream's honesty; the caller retries); a dropped or refused parameter resolves
 * to a failure.
 */
export async function checkUpstream(target: UpstreamTarget, login: Omit<ServerLogin, 'params'>): Promise<UpstreamCheck> {
  const upstream = describeTarget(target);
  // A schema name no one has, different every time, so no default or leftover setting can match it by chance.
  const expected = `tandem_probe_${randomBytes(6).toString('hex')}`;
  let session: ServerSession;
  try {
    session = await ServerSession.open(target, { ...login, params: [['search_path', expected]] });
  } catch (error) {
    if (error instanceof ServerError && /search_path/.test(error.message)) {
      return { ok: false, failure: { cause: 'search_path_refused', upstream, serverMessage: error.message } };
    }
    throw error;
  }
  try {
    const rows = await session.query("SELECT pg_catalog.current_setting('search_path')");
    const seen = rows[0]?.[0] ?? '';
    return seen === expected ? { ok: true } : { ok: false, failure: { cause: 'search_path_ignored', upstream, expected, seen } };
  } finally {
    session.close();
  }
}

/**
 * PgBouncer in session mode is no way out on its own: it builds its server connections' startup
 * packets itself in every pool mode (tested with 1.18, test/proxy/upstream-check.test.ts).
 */
const WAYS_OUT =
  'Let tandem do the pooling: point the proxy\'s --postgres-url at PostgreSQL itself and use --pool-mode. ' +
  'Or, with PgBouncer 1.20 or later in front of PostgreSQL 18 (the first to report search_path to poolers), add search_path to PgBouncer\'s track_extra_parameters. ' +
  'PgBouncer in session mode does not carry the parameter either.';

/** The FATAL error a client asking for a version gets while the upstream fails the check. */
export function upstreamCheckError(failure: UpstreamCheckFailure): ErrorFields {
  const detail =
    failure.cause === 'search_path_ignored'
      ? `A session opened through ${failure.upstream} with search_path "${failure.expected}" has search_path "${failure.seen}": ` +
        'something between the proxy and PostgreSQL (a transaction-mode pooler such as PgBouncer, or RDS Proxy) drops the search_path startup parameter, so every client would run on the wrong schema.'
      : `${failure.upstream} refuses the search_path startup parameter ("${failure.serverMessage}"), which is how the proxy selects a version.`;
  return {
    severity: 'FATAL',
    code: '08004',
    message: 'the tandem proxy cannot route versions through its upstream: the search_path startup parameter does not reach PostgreSQL',
    detail,
    hint: WAYS_OUT,
  };
}

/** A failed check is repeated after this long, so that fixing the upstream needs no restart. */
const RECHECK_FAILED_AFTER_MS = 10_000;

/**
 * The check, once per upstream: run before the first versioned login, again after a connection to
 * the upstream failed (it may be another server now), and, while failing, at most every 10 s.
 */
export class UpstreamGuard {
  private state: { status: 'unknown' } | { status: 'checking'; done: Promise<ErrorFields | undefined> } | { status: 'ok' } | { status: 'failed'; error: ErrorFields; at: number } = { status: 'unknown' };

  constructor(
    private readonly target: UpstreamTarget,
    private readonly login: Omit<ServerLogin, 'params'>,
    private readonly onResult: (result: { ok: true } | { ok: false; error: ErrorFields } | { ok: undefined; reason: string }) => void,
  ) {}

  /** Undefined when versions may be served through the upstream; else the FATAL error for the client. */
  check(): Promise<ErrorFields | undefined> {
    const state = this.state;
    if (state.status === 'ok') return Promise.resolve(undefined);
    if (state.status === 'checking') return state.done;
    if (state.status === 'failed' && performance.now() - state.at < RECHECK_FAILED_AFTER_MS) return Promise.resolve(state.error);
    const done = checkUpstream(this.target, this.login).then(
      (result) => {
        if (result.ok) {
          this.state = { status: 'ok' };
          this.onResult({ ok: true });
          return undefined;
        }
        const error = upstreamCheckError(result.failure);
        this.state = { status: 'failed', error, at: performance.now() };
        this.onResult({ ok: false, error });
        return error;
      },
      (error: unknown) => {
        // Unreachable or refusing the proxy's own login: that says nothing about the parameter; the
        // client's own connection will meet the same trouble and say so.
        this.state = { status: 'unknown' };
        this.onResult({ ok: undefined, reason: (error as Error).message });
        return undefined;
      },
    );
    this.state = { status: 'checking', done };
    return done;
  }

  /** A connection to the upstream failed: check again before the next versioned login. */
  reset(): void {
    if (this.state.status === 'ok') this.state = { status: 'unknown' };
  }

  /** The last failure, for /readyz. */
  get failure(): ErrorFields | undefined {
    return this.state.status === 'failed' ? this.state.error : undefined;
  }
}
