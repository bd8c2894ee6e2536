/**
 * A small app of one version: it inserts users, updates the ones it inserted and reads them back by
 * their email, in a loop, until SIGTERM; then it prints what it did as one JSON line. Version 1 calls
 * the column `email` (and sometimes leaves it NULL), version 2 calls it `email_address`.
 *
 *   npx tsx examples/rolling-deploy/app.ts URL COLUMN NAME
 *   e.g.  … "postgres://postgres@127.0.0.1:6432/postgres@01_create_users" email v1
 */
import pg from 'pg';

const [url, column, name] = process.argv.slice(2);
if (!url || (column !== 'email' && column !== 'email_address') || !name) {
  console.error('usage: app.ts URL email|email_address NAME');
  process.exit(2);
}

export interface AppReport {
  name: string;
  queries: number;
  errors: number;
  inserted: number;
  /** id → the email this app last wrote to that user (null: it wrote NULL). */
  written: Record<string, string | null>;
  firstErrors: string[];
}

const report: AppReport = { name, queries: 0, errors: 0, inserted: 0, written: {}, firstErrors: [] };
let stopping = false;
process.on('SIGTERM', () => (stopping = true));
process.on('SIGINT', () => (stopping = true));

const WORKERS = 2;
let started = 0;

async function worker(worker: number): Promise<void> {
  const client = new pg.Client({ connectionString: url, application_name: `app-${name}` });
  client.on('error', () => {});
  await client.connect();
  const mine: number[] = [];
  for (let i = 0; !stopping; i++) {
    // Once every worker has sent its first query, the app is running: the scenario's phases start
    // from here, not from the spawn (which takes seconds on a loaded machine).
    if (i === 1 && ++started === WORKERS) console.error('ready');
    const tag = `${name}-${worker}-${i}`;
    try {
      if (i % 3 === 0 || mine.length === 0) {
        // Version 1 still writes users without an email now and then; version 2 never does.
        const email = name === 'v1' && i % 10 === 0 ? null : `${tag}@example.com`;
        const { rows } = await client.query(`INSERT INTO users (name, ${column}) VALUES ($1, $2) RETURNING id`, [tag, email]);
        report.queries++;
        mine.push(Number(rows[0].id));
        report.written[rows[0].id] = email;
        report.inserted++;
      } else {
        const id = mine[i % mine.length]!;
        const email = `${tag}@example.org`;
        await client.query(`UPDATE users SET ${column} = $2 WHERE id = $1`, [id, email]);
        report.written[id] = email;
        const { rows } = await client.query(`SELECT id FROM users WHERE ${column} = $1`, [email]);
        report.queries += 2;
        if (rows.length !== 1 || Number(rows[0].id) !== id) throw new Error(`read back ${email}: got ${JSON.stringify(rows)}`);
      }
    } catch (error) {
      report.errors++;
      if (report.firstErrors.length < 5) report.firstErrors.push(`${tag}: ${(error as Error).message}`);
    }
  }
  await client.end().catch(() => {});
}

await Promise.all(Array.from({ length: WORKERS }, (_, i) => worker(i + 1)));
console.log(JSON.stringify(report));
