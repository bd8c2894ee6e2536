/**
 * Native logins (`--native-login on`, transaction mode, `--auth-type trust`): the native thread
 * accepts on the proxy's listening socket and logs in, by itself, every client whose startup packet
 * is byte for byte one that JavaScript has logged in before and taught it (native/forwarder.c,
 * "native logins"). So a connection per transaction (`pgbench -C`) never enters JavaScript until the
 * thread reports it, in a batch with the round's other reports; every other connection comes to
 * JavaScript with the bytes read so far and logs in as before.
 *
 * What the thread is taught stays right as long as the same startup packet would be logged in the
 * same way: under trust the login depends only on the packet, the version list of its database (which
 * version a name or the default picks) and the pool's welcome (the server's parameters). So a learned
 * login is replaced when a JavaScript login of the same packet would welcome it otherwise, and
 * forgotten when its database's version list changes (a new version may be the default now; a
 * retired one's clients must not log in to it); the version cache's TTL alone changes nothing, and
 * server.ts refreshes the lists of databases with learned logins on that TTL, as logins would.
 */
import type { VersionInfo } from '../../state/versions.js';
import { LOGIN_FIGURE_SLOTS, LoginFigure, NATIVE_LOGIN_FALLBACKS, type NativeEnd, type NativeForwarder, type NativeListenerHandle, type NativeLoginReport } from '../native.js';
import type { ParameterValues } from '../pool/client-parameters.js';
import type { PoolKey } from '../pool/pool.js';
import type { NativePool } from './native-pooled.js';
import type { Pooling } from './pooled.js';

/** A login the thread makes itself, as JavaScript made it once. */
export interface LearnedLogin {
  readonly id: number;
  readonly database: string;
  readonly user: string;
  readonly version: VersionInfo | undefined;
  readonly key: PoolKey;
  readonly pooling: Pooling;
  /** The client parameters its clients start with (each session gets a copy). */
  readonly parameters: ParameterValues;
  /** The thread's pool its clients join. */
  readonly pool: NativePool;
  /** AuthenticationOk and the ParameterStatus messages the thread sends. */
  readonly welcome: Buffer;
  /** The database's version list it was routed with (versionSignature). */
  readonly versions: string;
}

export interface NativeLoginHooks {
  /** A connection for JavaScript to log in (`fd` is its now), with what the client sent so far. */
  accepted(fd: number, held: Buffer): void;
  /** The thread logged a client in with `learned`. */
  loggedIn(learned: LearnedLogin, login: NativeLoginReport): void;
  /** `clients` logged in with `learned` ended before they were reported: their counters added up (Counter). */
  brief(learned: LearnedLogin, clients: number, counters: Float64Array): void;
}

/**
 * Distinct startup packets the thread is taught at most per proxy (it compares a client's packet with
 * each): clients that each send their own (a unique application_name) are logged in by JavaScript.
 */
const MAX_LEARNED = 256;

/** How long a forgotten login is still known by id, for the logins the thread made with it before it heard. */
const FORGOTTEN_KEPT_MS = 10_000;

export function versionSignature(versions: readonly VersionInfo[]): string {
  return versions.map((version) => version.versionSchema).join('\0');
}

export class NativeLogins {
  /** Shared with the thread (LoginFigure). */
  private readonly figures = new Float64Array(LOGIN_FIGURE_SLOTS);
  private readonly byPacket = new Map<string, LearnedLogin>();
  private readonly byId = new Map<number, LearnedLogin>();
  private nextId = 1;
  /** Native logins that ended before they were reported (listen's `brief`). */
  private briefClients = 0;
  private listener: NativeListenerHandle | undefined;
  private listening = false;

  constructor(private readonly forwarder: NativeForwarder) {}

  /**
   * The thread takes over accepting on `listenFd`. `brief`: no line is logged per client, so a client
   * that ends before its login is reported (the thread's reports wait up to 20 ms then) is only
   * counted, in `hooks.brief`.
   */
  listen(listenFd: number, maxClientConn: number, tlsOn: boolean, hooks: NativeLoginHooks, brief: boolean): void {
    this.figures[LoginFigure.MaxClients] = maxClientConn;
    this.listener = this.forwarder.listen(
      listenFd,
      this.figures,
      tlsOn,
      {
        accepted: hooks.accepted,
        loggedIn: (login) => {
          this.figures[LoginFigure.Seen] = (this.figures[LoginFigure.Seen] ?? 0) + 1;
          const learned = this.byId.get(login.learnedId);
          if (learned) hooks.loggedIn(learned, login);
        },
        brief: (learnedId, clients, counters) => {
          // Seen, and so is each one's end: their places were given back.
          this.figures[LoginFigure.Seen] = (this.figures[LoginFigure.Seen] ?? 0) + clients;
          this.figures[LoginFigure.EndsSeen] = (this.figures[LoginFigure.EndsSeen] ?? 0) + clients;
          this.briefClients += clients;
          const learned = this.byId.get(learnedId);
          if (learned) hooks.brief(learned, clients, counters);
        },
      },
      brief,
    );
    this.listening = true;
  }

  /** No more accepting (shutdown). */
  stop(): void {
    if (!this.listening) return;
    this.listening = false;
    if (this.listener) this.forwarder.unlisten(this.listener);
  }

  /** JavaScript's admitted sessions now, for the thread's --max-client-conn check. */
  setAdmitted(count: number): void {
    this.figures[LoginFigure.JsAdmitted] = count;
  }

  /**
   * Native logins JavaScript has not been told of yet hold --max-client-conn places too; the ends of
   * native logins it has not been told of yet have given theirs back (their reports may wait).
   */
  get inFlight(): number {
    const logins = (this.figures[LoginFigure.NativeTotal] ?? 0) - (this.figures[LoginFigure.Seen] ?? 0);
    const ends = (this.figures[LoginFigure.NativeEnds] ?? 0) - (this.figures[LoginFigure.EndsSeen] ?? 0);
    return logins - ends;
  }

  /**
   * A natively logged-in session's end came from the thread: counted seen, as the thread counts it
   * (not a hand-back, which is no end, nor a termination JavaScript asked for, whose place it gave
   * back itself). Before the session lets its place go, so that the thread never counts one too few.
   */
  endSeen(end: NativeEnd): void {
    if (end.reason !== 'handed_back' && end.reason !== 'terminated') this.figures[LoginFigure.EndsSeen] = (this.figures[LoginFigure.EndsSeen] ?? 0) + 1;
  }

  /**
   * After a JavaScript login the thread could have made: teaches it, unless it knows that packet
   * with the same pool, welcome and version list already (then nothing is sent).
   */
  learn(packet: Buffer, login: Omit<LearnedLogin, 'id'>): void {
    if (!this.listening || !this.listener || login.pool.closed) return;
    const text = packet.toString('latin1');
    const known = this.byPacket.get(text);
    if (known && known.pool === login.pool && known.versions === login.versions && known.welcome.equals(login.welcome)) return;
    // The thread forgot the logins of the pools closed since (native-pooled.ts): their places are free.
    if (!known && this.byPacket.size >= MAX_LEARNED) this.forgetWhere((learned) => learned.pool.closed);
    if (!known && this.byPacket.size >= MAX_LEARNED) return;
    // The thread replaces what the same packet taught before.
    if (known) this.dropId(known.id);
    const learned: LearnedLogin = { ...login, id: this.nextId++ };
    this.byPacket.set(text, learned);
    this.byId.set(learned.id, learned);
    this.forwarder.learn(this.listener, learned.id, packet, login.welcome, login.pool.handle);
  }

  /** A version list was loaded: logins learned under another list of the database are forgotten. */
  versionsLoaded(database: string, versions: readonly VersionInfo[]): void {
    const signature = versionSignature(versions);
    this.forgetWhere((learned) => learned.database === database && learned.versions !== signature);
  }

  /** A disabled database (DISABLE): its clients must be refused in Node. */
  forgetDatabase(database: string): void {
    this.forgetWhere((learned) => learned.database === database);
  }

  /** A retired version: no client logs in to it any more. */
  forgetVersion(database: string, versionSchema: string): void {
    this.forgetWhere((learned) => learned.database === database && learned.version?.versionSchema === versionSchema);
  }

  /** The databases with learned logins (their version lists are kept fresh). */
  databases(): Set<string> {
    return new Set([...this.byPacket.values()].map((learned) => learned.database));
  }

  get learnedCount(): number {
    return this.byPacket.size;
  }

  /** For /metrics and /status. */
  counts(): { logins: number; brief: number; fallbacks: Record<string, number> } {
    const fallbacks: Record<string, number> = {};
    NATIVE_LOGIN_FALLBACKS.forEach((reason, i) => (fallbacks[reason] = this.figures[LoginFigure.Fallbacks + i] ?? 0));
    return { logins: this.figures[LoginFigure.NativeTotal] ?? 0, brief: this.briefClients, fallbacks };
  }

  private forgetWhere(test: (learned: LearnedLogin) => boolean): void {
    for (const [text, learned] of this.byPacket) {
      if (!test(learned)) continue;
      this.byPacket.delete(text);
      if (this.listener) this.forwarder.forget(this.listener, learned.id);
      this.dropId(learned.id);
    }
  }

  private dropId(id: number): void {
    setTimeout(() => this.byId.delete(id), FORGOTTEN_KEPT_MS).unref();
  }
}
