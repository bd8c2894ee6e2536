import { readdir } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { TandemError } from '../errors/index.js';
import { loadMigrationFile, MIGRATION_EXTENSIONS, type LoadedMigration } from './load.js';

/** The names of a folder's migration files (.json, .yaml, .yml), in the order they apply. */
export async function listMigrationFiles(dir: string): Promise<string[]> {
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new TandemError({ kind: 'folder_unreadable', dir, errno: code });
  }
  return entries
    .filter((name) => (MIGRATION_EXTENSIONS as readonly string[]).includes(extname(name).toLowerCase()))
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/** Every migration file in a folder, loaded and validated, in name order. */
export async function loadMigrationFolder(dir: string): Promise<LoadedMigration[]> {
  const files = await listMigrationFiles(dir);
  const loaded: LoadedMigration[] = [];
  for (const name of files) loaded.push(await loadMigrationFile(join(dir, name)));
  const seen = new Map<string, string>();
  for (const one of loaded) {
    const other = seen.get(one.migration.name);
    if (other) {
      throw new TandemError({ kind: 'migration_duplicate', name: one.migration.name, files: [other, one.file] }, { file: one.file });
    }
    seen.set(one.migration.name, one.file);
  }
  return loaded;
}

export interface AppliedMigration {
  name: string;
  digest: string;
  status: string;
  /** pgroll's migration_type, for a migration imported from pgroll's history. */
  pgrollType?: string | null;
}

/**
 * Lines up the folder with the history: applied migrations must be the folder's first files, in
 * order and unchanged. Returns the files not applied yet.
 *
 * History imported from pgroll is lined up the way pgroll does it: from its latest baseline on
 * (files named up to the baseline's name are the past the baseline stands for), and by name only,
 * as pgroll stored each migration re-serialized rather than as its file had it.
 */
export function unappliedMigrations(allFiles: LoadedMigration[], allApplied: AppliedMigration[]): LoadedMigration[] {
  const baseline = allApplied.findLastIndex((done) => done.pgrollType === 'baseline');
  const applied = baseline < 0 ? allApplied : allApplied.slice(baseline + 1);
  const folder = baseline < 0 ? allFiles : allFiles.filter((file) => file.migration.name > allApplied[baseline]!.name);
  applied.forEach((done, i) => {
    const file = folder[i];
    if (!file) {
      throw new TandemError({ kind: 'history_mismatch', problem: 'file_missing', name: done.name });
    }
    if (file.migration.name !== done.name) {
      const elsewhere = folder.findIndex((f) => f.migration.name === done.name);
      throw new TandemError(
        elsewhere >= 0
          ? { kind: 'history_mismatch', problem: 'sorts_elsewhere', name: done.name, appliedAs: i + 1, sortsAs: elsewhere + 1, before: file.migration.name }
          : { kind: 'history_mismatch', problem: 'other_file', name: done.name, appliedAs: i + 1, found: file.migration.name },
        { file: file.file },
      );
    }
    if (!done.pgrollType && file.digest !== done.digest) {
      throw new TandemError({ kind: 'history_mismatch', problem: 'changed', name: done.name }, { file: file.file });
    }
  });
  return folder.slice(applied.length);
}
