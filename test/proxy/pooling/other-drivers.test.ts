/**
 * Transaction pooling with drivers that prepare every statement on the server: psycopg 3 with
 * `prepare_threshold=0`, asyncpg with its statement cache and pgjdbc with `prepareThreshold=1`, each
 * run as a small program against the proxy in this process. Skipped, with the reason printed, where
 * the driver is not installed (Debian: python3-psycopg, python3-asyncpg; libpostgresql-jdbc-java and
 * a JDK).
 */
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { usePostgres } from '../../support/harness.js';
import { waitFor } from '../../support/spawn.js';
import { selectForwarder } from '../../../src/proxy/native.js';
import { capturedLogger, createUsersTable, databaseOf, startTestProxy, type TestProxy } from '../support.js';
import { poolingOptions } from './support.js';

const db = usePostgres();
const run = promisify(execFile);

/** Debian's python3 (a pyenv or venv python3 on PATH would not see python3-psycopg). */
const PYTHON = '/usr/bin/python3';
const PGJDBC = '/usr/share/java/postgresql.jar';

/** Why Debian's python3 cannot run a driver's program: the module is missing (the package that gives it). */
function pythonModuleMissing(module: string): string | undefined {
  if (spawnSync(PYTHON, ['-c', `import ${module}`], { stdio: 'ignore' }).status !== 0) return `${PYTHON} cannot import ${module} (apt-get install python3-${module})`;
  return undefined;
}

function pgjdbcMissing(): string | undefined {
  if (!existsSync(PGJDBC)) return `${PGJDBC} is missing (apt-get install libpostgresql-jdbc-java)`;
  // A source-file launch (java Probe.java) compiles in memory: it needs a JDK, not only a JRE.
  if (spawnSync('javac', ['-version'], { stdio: 'ignore' }).status !== 0) return 'no JDK (javac) on PATH';
  return undefined;
}

/** Writes a program to a fresh directory and returns its path. */
function program(name: string, source: string): string {
  const file = join(mkdtempSync(join(tmpdir(), 'tandem-driver-')), name);
  writeFileSync(file, source);
  return file;
}

interface DriverReport {
  /** The email of each user id asked for, in order. */
  mails: string[];
  /** Distinct server backends the statements ran on. */
  backends: number;
}

/**
 * Three connections over a pool of two, one transaction at a time, except that now and then another
 * connection holds a server connection in a transaction: the pool lends the most recently returned
 * connection first, so only that moves the prepared statements to the other one.
 */
const PSYCOPG_PROGRAM = `
import contextlib, json, sys
import psycopg

conns = [psycopg.connect(sys.argv[1], prepare_threshold=0) for _ in range(3)]
mails, pids = [], set()
for i in range(30):
    conn, holder = conns[i % 3], conns[(i + 1) % 3]
    with contextlib.ExitStack() as held:
        if i % 3 == 0:
            held.enter_context(holder.transaction())
            holder.execute("SELECT 1")
        with conn.transaction():
            mails.append(conn.execute("SELECT email FROM users WHERE id = %s", (1 + i % 2,)).fetchone()[0])
            pids.add(conn.execute("SELECT pg_backend_pid() WHERE %s", (True,)).fetchone()[0])
    # Autocommit statements too: each is its own transaction on the server.
    conn.autocommit = not conn.autocommit
for conn in conns:
    conn.close()
print(json.dumps({"mails": mails, "backends": len(pids)}))
`;

/** The same with asyncpg, which prepares every statement under its own name and caches it (statement_cache_size 100). */
const ASYNCPG_PROGRAM = `
import asyncio, json, sys
import asyncpg

async def main():
    conns = [await asyncpg.connect(sys.argv[1]) for _ in range(3)]
    mails, pids = [], set()
    for i in range(30):
        conn, holder = conns[i % 3], conns[(i + 1) % 3]
        held = None
        if i % 3 == 0:
            held = holder.transaction()
            await held.start()
            await holder.fetchval("SELECT 1")
        async with conn.transaction():
            mails.append(await conn.fetchval("SELECT email FROM users WHERE id = $1", 1 + i % 2))
            pids.add(await conn.fetchval("SELECT pg_backend_pid() WHERE $1", True))
        if held:
            await held.commit()
        # Outside a transaction too: each statement is its own transaction on the server.
        assert await conn.fetchval("SELECT $1::int + 1", i) == i + 1
    for conn in conns:
        await conn.close()
    print(json.dumps({"mails": mails, "backends": len(pids)}))

asyncio.run(main())
`;

const PGJDBC_PROGRAM = `
import java.sql.*;
import java.util.*;

public class Probe {
  public static void main(String[] args) throws Exception {
    List<Connection> conns = new ArrayList<>();
    for (int i = 0; i < 3; i++) conns.add(DriverManager.getConnection(args[0]));
    List<String> mails = new ArrayList<>();
    Set<Integer> pids = new HashSet<>();
    for (int i = 0; i < 30; i++) {
      Connection conn = conns.get(i % 3);
      Connection holder = conns.get((i + 1) % 3);
      if (i % 3 == 0) {
        holder.setAutoCommit(false);
        try (Statement hold = holder.createStatement()) { hold.execute("SELECT 1"); }
      }
      conn.setAutoCommit(i % 2 == 0);
      try (PreparedStatement byId = conn.prepareStatement("SELECT email FROM users WHERE id = ?");
           PreparedStatement pid = conn.prepareStatement("SELECT pg_backend_pid() WHERE ?")) {
        byId.setInt(1, 1 + i % 2);
        try (ResultSet rs = byId.executeQuery()) { rs.next(); mails.add(rs.getString(1)); }
        pid.setBoolean(1, true);
        try (ResultSet rs = pid.executeQuery()) { rs.next(); pids.add(rs.getInt(1)); }
      }
      if (!conn.getAutoCommit()) conn.commit();
      if (i % 3 == 0) holder.commit();
    }
    for (Connection conn : conns) conn.close();
    StringBuilder json = new StringBuilder("{\\"mails\\":[");
    for (int i = 0; i < mails.size(); i++) json.append(i == 0 ? "" : ",").append('"').append(mails.get(i)).append('"');
    System.out.println(json.append("],\\"backends\\":").append(pids.size()).append('}'));
  }
}
`;

const nativeBuilt = selectForwarder('auto').forwarder !== undefined;

/** A transaction-mode proxy over a pool of two, with its log lines. */
async function pooledProxy(): Promise<{ proxy: TestProxy; lines: Array<Record<string, unknown>> }> {
  const { logger, lines } = capturedLogger();
  const proxy = await startTestProxy(db.url, { logger, pooling: poolingOptions({ settings: { poolSize: 2 } }) });
  return { proxy, lines };
}

/**
 * Every one of the driver's connections was forwarded by the native thread to its end, none handed
 * to Node (where the forwarder is built): what these drivers send (named statements, their
 * tracked settings) is the thread's to serve.
 */
async function expectServedNatively(lines: Array<Record<string, unknown>>, connections: number): Promise<void> {
  if (!nativeBuilt) return;
  const forwarders = await waitFor(async () => {
    const closed = lines.filter((line) => line.event === 'close');
    return closed.length >= connections ? closed.map((line) => line.forwarder) : undefined;
  }, 10_000, `${connections} close lines`);
  expect(forwarders).toEqual(new Array(connections).fill('native'));
}

function expectEveryAnswerRight(report: DriverReport): void {
  expect(report.mails).toEqual(Array.from({ length: 30 }, (_, i) => (i % 2 === 0 ? 'a@example.com' : 'b@example.com')));
  // The statements really moved between the pool's two connections.
  expect(report.backends).toBe(2);
}

describe('server-side prepared statements of other drivers through transaction pooling', () => {
  const noPsycopg = pythonModuleMissing('psycopg');
  if (noPsycopg) console.log(`skipping the psycopg case: ${noPsycopg}`);
  it.skipIf(noPsycopg)('runs psycopg 3 with prepare_threshold=0', async () => {
    await createUsersTable(db.url);
    const { proxy, lines } = await pooledProxy();
    // Not spawnSync: the proxy runs in this process and must keep serving.
    const { stdout } = await run(PYTHON, [program('probe.py', PSYCOPG_PROGRAM), proxy.url(databaseOf(db.url))]);
    expectEveryAnswerRight(JSON.parse(stdout) as DriverReport);
    await expectServedNatively(lines, 3);
  });

  const noAsyncpg = pythonModuleMissing('asyncpg');
  if (noAsyncpg) console.log(`skipping the asyncpg case: ${noAsyncpg}`);
  it.skipIf(noAsyncpg)("runs asyncpg with its statement cache (every statement prepared under asyncpg's own name)", async () => {
    await createUsersTable(db.url);
    const { proxy, lines } = await pooledProxy();
    const { stdout } = await run(PYTHON, [program('probe_asyncpg.py', ASYNCPG_PROGRAM), proxy.url(databaseOf(db.url))]);
    expectEveryAnswerRight(JSON.parse(stdout) as DriverReport);
    expect((await proxy.metrics.text()).body).not.toMatch(/tandem_proxy_pinned_clients_total\{/);
    await expectServedNatively(lines, 3);
  });

  const noPgjdbc = pgjdbcMissing();
  if (noPgjdbc) console.log(`skipping the pgjdbc case: ${noPgjdbc}`);
  it.skipIf(noPgjdbc)('runs pgjdbc with prepareThreshold=1', async () => {
    await createUsersTable(db.url);
    const { proxy, lines } = await pooledProxy();
    // pgjdbc sends client_encoding, DateStyle, TimeZone and extra_float_digits at login and runs
    // `SET extra_float_digits = 3` after it: tracked parameters, carried to every server connection,
    // so three connections share the pool's two without pinning any.
    const url = `jdbc:postgresql://127.0.0.1:${proxy.port}/${databaseOf(db.url)}?user=postgres&prepareThreshold=1`;
    const { stdout } = await run('java', ['-cp', PGJDBC, program('Probe.java', PGJDBC_PROGRAM), url]);
    expectEveryAnswerRight(JSON.parse(stdout) as DriverReport);
    expect((await proxy.metrics.text()).body).not.toMatch(/tandem_proxy_pinned_clients_total\{/);
    await expectServedNatively(lines, 3);
  });
});
