/**
 * The session parameters a pooled client keeps as its own although its server connections are
 * shared: the values it asked for at login (startup packet, `options`) or set since, carried to every
 * server connection it is lent (one Query of SETs before its first message, only where the
 * connection differs) and shown in its welcome. Pure: the session layer does the I/O.
 *
 * The standard set is what drivers read or set to decode what they receive (the first six are
 * reported by the server in ParameterStatus messages, which drivers check: pgjdbc refuses a DateStyle
 * not starting with ISO and a client_encoding other than UTF8), plus extra_float_digits, which pgjdbc
 * sets after its login. `--track-extra-parameters` adds more (PgBouncer's track_extra_parameters):
 * they are kept as extra_float_digits is, from the client's startup packet and its SET and RESET
 * statements, whether or not the server reports them. search_path is never among them: a pool serves
 * one version, fixed by its connections' search_path startup parameter. Anything else a client sets
 * per session pins it (pool/pinning.ts), and anything else it asks for at login cannot be pooled.
 */
import { quoteLiteral } from '../../core/quote.js';
import { MessageType, encodeMessage, parseParameterStatus, type ErrorFields, type StartupParams } from '../protocol/messages.js';
import { readOptions } from '../routing.js';

/** The server reports these (GUC_REPORT): a connection's values are known from its ParameterStatus messages. */
const REPORTED = ['client_encoding', 'DateStyle', 'TimeZone', 'IntervalStyle', 'standard_conforming_strings', 'application_name'] as const;
/** Not reported: known from the SETs the proxy sent and the client's statements. */
const UNREPORTED = ['extra_float_digits'] as const;

const REPORTED_NAMES = new Set<string>(REPORTED);

/** Startup parameters that are the routing's or the protocol's, never a setting to carry. */
const NOT_SETTINGS = new Set(['user', 'database', 'options', 'replication', 'search_path']);

/** A setting's name as PostgreSQL accepts it in SET (an extension's `prefix.name` included). */
const SETTING_NAME = /^[a-z_][a-z0-9_$]*(\.[a-z_][a-z0-9_$]*)?$/;

/**
 * The extra parameters of `--track-extra-parameters`, in lower case (setting names are
 * case-insensitive); an Error names the first that cannot be tracked. The standard ones are dropped
 * (they are tracked anyway).
 */
export function readExtraParameters(names: readonly string[]): string[] {
  const extra: string[] = [];
  for (const raw of names) {
    const name = raw.trim().toLowerCase();
    if (!name) continue;
    if (name === 'search_path') {
      throw new Error('search_path cannot be tracked: a pool serves one version, and its server connections are opened with that version\'s search_path');
    }
    if (NOT_SETTINGS.has(name)) throw new Error(`"${name}" is a startup parameter of the protocol, not a setting a pooled client can carry`);
    if (!SETTING_NAME.test(name)) throw new Error(`"${raw.trim()}" is not a setting name`);
    if (STANDARD.trackedName(name) || extra.includes(name)) continue;
    extra.push(name);
  }
  return extra;
}

/** Which parameters a proxy's pooled clients carry: the standard set and `--track-extra-parameters`. */
export class TrackedParameters {
  /** The names tracked without being reported (extra_float_digits and the extra ones), in server spelling. */
  readonly unreported: readonly string[];
  /** Every tracked name, for messages. */
  readonly names: readonly string[];
  private readonly canonical: ReadonlyMap<string, string>;
  /** The pool's welcome as every client of the pool starts from it, by the pool's frames. */
  private readonly welcomes = new WeakMap<readonly Buffer[], ReadWelcome>();

  /** `extra`: lower-case names from readExtraParameters. */
  constructor(extra: readonly string[] = []) {
    this.unreported = [...UNREPORTED, ...extra];
    this.names = [...REPORTED, ...this.unreported];
    this.canonical = new Map(this.names.map((name) => [name.toLowerCase(), name]));
  }

  /** The tracked parameter's name as the server reports it, for any spelling. */
  trackedName(name: string): string | undefined {
    return this.canonical.get(name.toLowerCase());
  }

  /** Whether the proxy learns the parameter's value from the server's ParameterStatus messages. */
  isReported(name: string): boolean {
    return REPORTED_NAMES.has(name);
  }

  /**
   * Reads a pooled client's startup packet: tracked parameters become its values (`options` first,
   * the packet's own parameters win, as the server applies them); user, database and search_path are
   * the routing's; names in `ignored` (lower case) are dropped, as PgBouncer's
   * ignore_startup_parameters; anything else is refused.
   */
  readStartupParameters(params: StartupParams, ignored: ReadonlySet<string>): StartupParameters {
    const fromOptions: Array<[string, string]> = [];
    const direct: Array<[string, string]> = [];
    for (const [name, value] of params) {
      if (name === 'user' || name === 'database' || name.toLowerCase() === 'search_path') continue;
      // Protocol extensions are the protocol's business: the proxy speaks 3.0 and the server never sees them.
      if (name.startsWith('_pq_.')) continue;
      if (name === 'options') {
        const { settings, other } = readOptions(value);
        if (other.length > 0 && !ignored.has('options')) return this.unsupported('options', `its switch "${other[0]}" is not a -c setting`);
        fromOptions.push(...settings);
        continue;
      }
      direct.push([name, value]);
    }
    const values: ParameterValues = new Map();
    for (const [name, value] of [...fromOptions, ...direct]) {
      const tracked = this.trackedName(name);
      if (tracked) values.set(tracked, value);
      else if (name.toLowerCase() !== 'search_path' && !ignored.has(name.toLowerCase())) return this.unsupported(name);
    }
    return { ok: true, values };
  }

  private unsupported(name: string, why?: string): StartupParameters {
    return {
      ok: false,
      error: {
        severity: 'FATAL',
        code: '08P01',
        message: `unsupported startup parameter: ${name}${why ? ` (${why})` : ''}`,
        detail: `"${name}" cannot be pooled: the proxy shares server connections between clients and carries only ${this.names.join(', ')} (and the version's search_path) to them.`,
        hint: `Set it inside each transaction (SET LOCAL), for the role or database (ALTER ROLE … SET), have the proxy carry it with --track-extra-parameters ${name}, or ignore it with --ignore-startup-parameters ${name}.`,
      },
    };
  }

  private readWelcome(welcome: readonly Buffer[]): ReadWelcome {
    let read = this.welcomes.get(welcome);
    if (!read) {
      const statuses = welcome.map((frame) => parseParameterStatus(frame.subarray(5)));
      const defaults: ParameterValues = new Map();
      for (const { name, value } of statuses) if (this.isReported(name)) defaults.set(name, value);
      for (const name of this.unreported) defaults.set(name, null);
      read = { statuses, defaults, bytes: Buffer.concat(welcome), lastOwn: new Map() };
      this.welcomes.set(welcome, read);
    }
    return read;
  }

  /** A client's values: the pool's defaults (the welcome's reported values) under the ones it asked for. */
  clientValues(asked: ParameterValues, welcome: readonly Buffer[]): ParameterValues {
    const values: ParameterValues = new Map(this.readWelcome(welcome).defaults);
    for (const [name, value] of asked) values.set(name, value);
    return values;
  }

  /**
   * The welcome's ParameterStatus frames, as one Buffer, with the client's own values in place of
   * the pool's: for the reported parameters, and for an extra one the server happens to report too
   * (default_transaction_read_only, say) when the client asked for its own value.
   */
  welcomeFrames(welcome: readonly Buffer[], values: ParameterValues): Buffer {
    const read = this.readWelcome(welcome);
    let frames: Buffer[] | undefined;
    read.statuses.forEach(({ name, value }, index) => {
      const tracked = this.trackedName(name);
      const own = tracked === undefined ? undefined : values.get(tracked);
      if (typeof own === 'string' && own !== value) (frames ??= [...welcome])[index] = ownFrame(read, name, own);
    });
    return frames ? Buffer.concat(frames) : read.bytes;
  }
}

/** Without --track-extra-parameters. */
export const STANDARD = new TrackedParameters();

/** A tracked parameter's value: null is the session default (RESET), for the unreported ones. */
export type ParameterValue = string | null;
export type ParameterValues = Map<string, ParameterValue>;

/** What a pooled login asks for, or the first startup parameter that cannot be pooled. */
export type StartupParameters = { ok: true; values: ParameterValues } | { ok: false; error: ErrorFields };

/** A pool's welcome as every client of the pool starts from it: read once, not at each login. */
interface ReadWelcome {
  /** Each frame's setting, in the frames' order. */
  readonly statuses: ReadonlyArray<{ readonly name: string; readonly value: string }>;
  /** The reported values, then the unreported ones at their defaults (null). */
  readonly defaults: ParameterValues;
  /** The frames as one Buffer. */
  readonly bytes: Buffer;
  /** Per setting, the last client value encoded in its place: a pool's clients mostly ask for the same (their application_name). */
  readonly lastOwn: Map<string, { readonly value: string; readonly frame: Buffer }>;
}

function ownFrame(read: ReadWelcome, name: string, value: string): Buffer {
  const last = read.lastOwn.get(name);
  if (last?.value === value) return last.frame;
  const frame = encodeParameterStatus(name, value);
  read.lastOwn.set(name, { value, frame });
  return frame;
}

function encodeParameterStatus(name: string, value: string): Buffer {
  return encodeMessage(MessageType.ParameterStatus, Buffer.from(`${name}\0${value}\0`, 'utf8'));
}

/**
 * The SQL that brings a server connection (whose values `current` gives; undefined: not known) to the
 * client's, or undefined when they already match. The names it sets come back in `names`.
 */
export function parameterSync(wanted: ParameterValues, current: (name: string) => ParameterValue | undefined): { sql: string; names: string[] } | undefined {
  const statements: string[] = [];
  const names: string[] = [];
  for (const [name, value] of wanted) {
    const have = current(name);
    if (have === value && have !== undefined) continue;
    statements.push(value === null ? `RESET ${name}` : `SET ${name} TO ${quoteLiteral(value)}`);
    names.push(name);
  }
  return statements.length > 0 ? { sql: statements.join('; '), names } : undefined;
}
