/**
 * A real PgBouncer (Debian's `pgbouncer` package) in front of a test server, for tests of what the
 * proxy does behind a pooler. Tests skip with a printed reason when it is not installed. PgBouncer
 * refuses to run as root, so as root it runs as `postgres`, like the test server.
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../src/dev/ports.js';
import { waitFor } from './spawn.js';

/** Why PgBouncer tests cannot run here, or undefined when they can. */
export function pgbouncerMissing(): string | undefined {
  return spawnSync('pgbouncer', ['--version']).status === 0 ? undefined : 'pgbouncer is not installed (Debian: apt-get install -y pgbouncer)';
}

export interface PgBouncerOptions {
  /** The server it pools for; the superuser logs in by trust on both sides. */
  host: string;
  port: number;
  database: string;
  poolMode: 'session' | 'transaction' | 'statement';
  /** Startup parameters PgBouncer drops instead of refusing the client (its ignore_startup_parameters). */
  ignoreStartupParameters?: string[];
}

export interface TestPgBouncer {
  port: number;
  stop(): Promise<void>;
}

export async function startPgBouncer(options: PgBouncerOptions): Promise<TestPgBouncer> {
  const dir = mkdtempSync(join(tmpdir(), 'tandem-pgbouncer-'));
  chmodSync(dir, 0o777);
  const port = await freePort();
  const file = (name: string) => join(dir, name);
  writeFileSync(file('userlist.txt'), '"postgres" ""\n');
  writeFileSync(
    file('pgbouncer.ini'),
    [
      '[databases]',
      `${options.database} = host=${options.host} port=${options.port} dbname=${options.database}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = trust',
      `auth_file = ${file('userlist.txt')}`,
      `pool_mode = ${options.poolMode}`,
      `ignore_startup_parameters = ${(options.ignoreStartupParameters ?? []).join(',')}`,
      `logfile = ${file('pgbouncer.log')}`,
      `pidfile = ${file('pgbouncer.pid')}`,
      '',
    ].join('\n'),
  );
  for (const name of ['userlist.txt', 'pgbouncer.ini']) chmodSync(file(name), 0o644);
  const command = process.getuid?.() === 0 ? ['runuser', '-u', 'postgres', '--', 'pgbouncer'] : ['pgbouncer'];
  const child = spawn(command[0]!, [...command.slice(1), file('pgbouncer.ini')], { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await waitFor(async () => {
    if (child.exitCode !== null) throw new Error(`pgbouncer exited with ${child.exitCode}: ${readLog(file('pgbouncer.log'))}`);
    return (await accepts(port)) ? true : undefined;
  }, 15_000, 'pgbouncer to listen');
  return {
    port,
    async stop() {
      // runuser does not pass signals on; PgBouncer's pid file names the process to stop.
      const pid = Number(readLog(file('pgbouncer.pid')).trim());
      if (pid > 0) process.kill(pid, 'SIGINT');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function readLog(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.on('error', () => resolve(false));
  });
}
