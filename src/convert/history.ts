/**
 * A folder of SQL migrations as an ORM or migration tool keeps it, in the order that tool applies
 * them, each with the migration name tandem gives it. `tandem migrate` applies files in byte order
 * of their names, so the names are chosen to sort the way the tool runs the files.
 *
 * - Prisma: `<timestamp>_<name>/migration.sql`; the folder is the name, folders run in name order.
 * - Drizzle: `NNNN_<tag>.sql` with `meta/_journal.json`, whose entries give the order.
 * - Flyway: `V<version>__<description>.sql`, run in version order (`V2` before `V10`); the version's
 *   parts are padded to one width and count (`V0002_0000__x` beside `V0002_0001__y`) so that byte
 *   order agrees. Repeatable `R__` files are not part
 *   of an ordered history and are left out, with a note.
 * - Anything else: the `.sql` files in natural order (`2_x` before `10_x`).
 */
import { readdir, readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { TandemError } from '../errors/index.js';

export type HistoryLayout = 'prisma' | 'drizzle' | 'flyway' | 'sql files';

export interface HistoryEntry {
  /** The SQL file. */
  file: string;
  /** The migration name it converts to (before any `_1`, `_2` split). */
  name: string;
}

export interface History {
  layout: HistoryLayout;
  entries: HistoryEntry[];
  /** Files seen and left out, with the reason. */
  skipped: string[];
}

const FLYWAY_VERSIONED = /^V(\d+(?:[._]\d+)*)__(.+)\.sql$/i;
const FLYWAY_REPEATABLE = /^R__.+\.sql$/i;

export async function readHistory(dir: string): Promise<History> {
  const entries = await readdir(dir, { withFileTypes: true }).catch((error: NodeJS.ErrnoException) => {
    throw new TandemError({ kind: 'convert_unreadable', problem: 'folder', errno: error.code }, { file: dir });
  });
  const prisma: HistoryEntry[] = [];
  for (const entry of entries) {
    if (!entry.isDirectory()) continue;
    const inner = await readdir(join(dir, entry.name)).catch(() => [] as string[]);
    if (inner.includes('migration.sql')) prisma.push({ file: join(dir, entry.name, 'migration.sql'), name: entry.name });
  }
  if (prisma.length) return { layout: 'prisma', entries: prisma.sort((a, b) => byteOrder(a.name, b.name)), skipped: [] };

  const sqlFiles = entries.filter((entry) => entry.isFile() && entry.name.toLowerCase().endsWith('.sql')).map((entry) => entry.name);
  const journal = await readDrizzleJournal(dir);
  if (journal) {
    const missing = journal.filter((tag) => !sqlFiles.includes(`${tag}.sql`));
    if (missing.length) {
      throw new TandemError({ kind: 'convert_unreadable', problem: 'journal_lists_missing', files: missing.map((t) => `${t}.sql`) }, { file: dir });
    }
    const listed = new Set(journal.map((tag) => `${tag}.sql`));
    const skipped = sqlFiles.filter((name) => !listed.has(name)).map((name) => `${name}: not in meta/_journal.json, so Drizzle does not run it`);
    return { layout: 'drizzle', entries: journal.map((tag) => ({ file: join(dir, `${tag}.sql`), name: tag })), skipped };
  }

  if (sqlFiles.some((name) => FLYWAY_VERSIONED.test(name))) {
    const versioned = sqlFiles.flatMap((name) => {
      const match = FLYWAY_VERSIONED.exec(name);
      return match ? [{ name, parts: match[1]!.split(/[._]/).map(Number), description: match[2]! }] : [];
    });
    versioned.sort((a, b) => compareVersions(a.parts, b.parts));
    // Every version with the same number of parts, each padded: then byte order is version order.
    const width = Math.max(4, ...versioned.flatMap((v) => v.parts.map((p) => String(p).length)));
    const depth = Math.max(...versioned.map((v) => v.parts.length));
    for (const v of versioned) while (v.parts.length < depth) v.parts.push(0);
    const skipped = sqlFiles
      .filter((name) => !FLYWAY_VERSIONED.test(name))
      .map((name) => (FLYWAY_REPEATABLE.test(name) ? `${name}: a repeatable migration, not part of the ordered history (convert it on its own)` : `${name}: not a Flyway migration name`));
    return {
      layout: 'flyway',
      entries: versioned.map((v) => ({ file: join(dir, v.name), name: `V${v.parts.map((p) => String(p).padStart(width, '0')).join('_')}__${v.description}` })),
      skipped,
    };
  }

  const natural = [...sqlFiles].sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  return { layout: 'sql files', entries: natural.map((name) => ({ file: join(dir, name), name: basename(name, '.sql') })), skipped: [] };
}

async function readDrizzleJournal(dir: string): Promise<string[] | undefined> {
  let text: string;
  try {
    text = await readFile(join(dir, 'meta', '_journal.json'), 'utf8');
  } catch {
    return undefined;
  }
  const file = join(dir, 'meta', '_journal.json');
  let journal: unknown;
  try {
    journal = JSON.parse(text);
  } catch (error) {
    throw new TandemError({ kind: 'convert_unreadable', problem: 'journal_not_json', reason: (error as Error).message }, { file });
  }
  const entries = (journal as { entries?: unknown }).entries;
  if (!Array.isArray(entries) || entries.some((e) => typeof (e as { tag?: unknown })?.tag !== 'string')) {
    throw new TandemError({ kind: 'convert_unreadable', problem: 'journal_shape' }, { file });
  }
  return [...(entries as { idx?: number; tag: string }[])].sort((a, b) => (a.idx ?? 0) - (b.idx ?? 0)).map((e) => e.tag);
}

function compareVersions(a: number[], b: number[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const difference = (a[i] ?? 0) - (b[i] ?? 0);
    if (difference) return difference;
  }
  return 0;
}

export function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/** Whether `tandem migrate`, which runs files in byte order of their names, would run these in this order. */
export function sortsInRunOrder(names: string[]): boolean {
  return names.every((name, index) => index === 0 || byteOrder(names[index - 1]!, name) < 0);
}

/** The names prefixed with their position (`0001_…`), for a history whose own names sort another way. */
export function prefixedByPosition(names: string[]): string[] {
  const width = Math.max(4, String(names.length).length);
  return names.map((name, index) => `${String(index + 1).padStart(width, '0')}_${name}`);
}
