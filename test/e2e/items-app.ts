/**
 * The app loops of the stacked-migrations e2e: one per version of the `items` table, each talking
 * to the proxy as its version, writing only its own rows and reading every write back through its
 * own version and through each other live version. Versions show a row differently (01 has the
 * price in units, 02 and 03 in cents, 03 also a `total`), so every read compares against what the
 * row is in that version's terms.
 */
import pg from 'pg';

/** One row as the newest version holds it, less its total (always cents × qty). */
export interface ItemRow {
  cents: number;
  qty: number;
  name: string;
}

export type VersionName = '01_base' | '02_cents' | '03_total';

/** What a row reads as through `version`, with the types node-postgres returns. */
function seenThrough(version: VersionName, row: ItemRow): Record<string, unknown> {
  // bigint columns come back as strings from node-postgres, int columns as numbers.
  if (version === '01_base') return { price: row.cents / 100, qty: row.qty, name: row.name };
  if (version === '02_cents') return { price: String(row.cents), qty: row.qty, name: row.name };
  return { price: String(row.cents), qty: row.qty, name: row.name, total: String(row.cents * row.qty) };
}

const COLUMNS: Record<VersionName, string> = {
  '01_base': 'price, qty, name',
  '02_cents': 'price, qty, name',
  '03_total': 'price, qty, name, total',
};

/** The values that write `row` as `version` would, in COLUMNS order (01 in units, 03 with its total). */
function written(version: VersionName, row: ItemRow): unknown[] {
  const price = version === '01_base' ? row.cents / 100 : row.cents;
  return version === '03_total' ? [price, row.qty, row.name, row.cents * row.qty] : [price, row.qty, row.name];
}

export interface AppReport {
  version: VersionName;
  writes: number;
  inserted: number;
  /** Reads of a just-written row through its own version. */
  readBacks: number;
  /** Reads of a just-written row through each other version (while it was live). */
  crossReads: Partial<Record<VersionName, number>>;
  errors: number;
  firstErrors: string[];
  /** id → the row as this app last wrote it. */
  rows: Map<number, ItemRow>;
}

export interface AppOptions {
  version: VersionName;
  /** The proxy URL for a version (`…/db@version`). */
  url: (version: VersionName) => string;
  /** The other versions live when the app starts; each is dropped with `retire`. */
  readThrough: VersionName[];
  /** Seeded rows this app may update (its own share: apps never write each other's rows). */
  seeded: number[];
}

export interface RunningApp {
  report: AppReport;
  /** Resolves once the app has written and read back once. */
  ready: Promise<void>;
  /** Reads every later write back through `version` too (a version started after the app). */
  readThroughToo(version: VersionName): Promise<void>;
  /** Stops reading through `version` and closes that connection (before that version is retired). */
  retire(version: VersionName): Promise<void>;
  stop(): Promise<AppReport>;
}

async function connect(url: string, name: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, application_name: name });
  client.on('error', () => {});
  await client.connect();
  return client;
}

export function startItemsApp(options: AppOptions): RunningApp {
  const { version } = options;
  const report: AppReport = { version, writes: 0, inserted: 0, readBacks: 0, crossReads: {}, errors: 0, firstErrors: [], rows: new Map() };
  const retiring = new Map<VersionName, () => void>();
  const joining = new Map<VersionName, (error?: Error) => void>();
  let stopping = false;
  let finished = false;
  let markReady: () => void = () => {};
  let failStart: (error: Error) => void = () => {};
  const ready = new Promise<void>((resolve, reject) => {
    markReady = resolve;
    failStart = reject;
  });
  ready.catch(() => {});

  const fail = (what: string, error: unknown) => {
    report.errors++;
    if (report.firstErrors.length < 5) report.firstErrors.push(`${version} ${what}: ${(error as Error).message}`);
  };

  /** Reads `id` through `client` (a connection as `through`) and compares it with `row`. */
  const readBack = async (client: pg.Client, through: VersionName, id: number, row: ItemRow) => {
    const { rows } = await client.query(`SELECT ${COLUMNS[through]} FROM items WHERE id = $1`, [id]);
    if (through === version) report.readBacks++;
    else report.crossReads[through] = (report.crossReads[through] ?? 0) + 1;
    const want = seenThrough(through, row);
    if (rows.length !== 1 || JSON.stringify(rows[0]) !== JSON.stringify(want)) {
      throw new Error(`row ${id} written as ${JSON.stringify(written(version, row))} reads through ${through} as ${JSON.stringify(rows)}, not ${JSON.stringify(want)}`);
    }
  };

  const loop = (async () => {
    const own = await connect(options.url(version), `app-${version}`);
    const readers = new Map<VersionName, pg.Client>();
    for (const other of options.readThrough) readers.set(other, await connect(options.url(other), `reader-${version}-${other}`));
    const mine: number[] = [...options.seeded];
    const params = COLUMNS[version].split(', ');
    for (let i = 0; !stopping; i++) {
      for (const [other, done] of joining) {
        joining.delete(other);
        try {
          readers.set(other, await connect(options.url(other), `reader-${version}-${other}`));
          done();
        } catch (error) {
          done(error as Error);
        }
      }
      // A version about to be retired: this app stops reading through it first (its clients count).
      for (const [other, done] of retiring) {
        await readers.get(other)?.end().catch(() => {});
        readers.delete(other);
        retiring.delete(other);
        done();
      }
      // Prices in whole units, so that 01's integer division by 100 loses nothing.
      const row: ItemRow = { cents: (1 + ((i * 7) % 500)) * 100, qty: 1 + (i % 9), name: `${version}-${i}` };
      try {
        let id: number;
        if (i % 4 === 0) {
          const placeholders = params.map((_, n) => `$${n + 1}`).join(', ');
          const { rows } = await own.query(`INSERT INTO items (${COLUMNS[version]}) VALUES (${placeholders}) RETURNING id`, written(version, row));
          id = Number(rows[0].id);
          mine.push(id);
          report.inserted++;
        } else {
          id = mine[(i * 31) % mine.length]!;
          const sets = params.map((column, n) => `${column} = $${n + 2}`).join(', ');
          await own.query(`UPDATE items SET ${sets} WHERE id = $1`, [id, ...written(version, row)]);
        }
        report.writes++;
        report.rows.set(id, row);
        await readBack(own, version, id, row);
        for (const [other, reader] of readers) await readBack(reader, other, id, row);
      } catch (error) {
        fail(`write ${i}`, error);
      }
      if (i === 0) markReady();
    }
    await Promise.all([own, ...readers.values()].map((c) => c.end().catch(() => {})));
    finished = true;
    for (const done of retiring.values()) done();
    for (const done of joining.values()) done(new Error(`app ${version} stopped before it read through another version`));
  })();
  loop.catch((error) => {
    fail('connect', error);
    failStart(error as Error);
  });

  return {
    report,
    ready,
    readThroughToo: (other) =>
      new Promise<void>((resolve, reject) => {
        if (finished) reject(new Error(`app ${version} has stopped`));
        else joining.set(other, (error) => (error ? reject(error) : resolve()));
      }),
    retire: (other) => new Promise<void>((resolve) => (finished ? resolve() : retiring.set(other, resolve))),
    async stop() {
      stopping = true;
      await loop.catch(() => {});
      return report;
    },
  };
}
