import { readdir } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { TandemError } from '../errors.js';
import { loadMigrationFile, MIGRATION_EXTENSIONS, type LoadedMigration } from './load.js';

/** Every migration file in a folder, loaded and validated, in name order. */
export async function loadMigrationFolder(dir: string): Promise<LoadedMigration[]> {
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new TandemError('folder_unreadable', code === 'ENOENT' ? `no such folder "${dir}"` : `cannot read folder "${dir}" (${code})`, { exitCode: 1 });
  }
  const files = entries
    .filter((name) => (MIGRATION_EXTENSIONS as readonly string[]).includes(extname(name).toLowerCase()))
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const loaded: LoadedMigration[] = [];
  for (const name of files) loaded.push(await loadMigrationFile(join(dir, name)));
  const seen = new Map<string, string>();
  for (const one of loaded) {
    const other = seen.get(one.migration.name);
    if (other) {
      throw new TandemError('migration_duplicate', `two files define migration "${one.migration.name}": ${other} and ${one.file}`, { file: one.file });
    }
    seen.set(one.migration.name, one.file);
  }
  return loaded;
}

export interface AppliedMigration {
  name: string;
  digest: string;
  status: string;
}

/**
 * Lines up the folder with the history: applied migrations must be the folder's first files, in
 * order and unchanged. Returns the files not applied yet.
 */
export function unappliedMigrations(folder: LoadedMigration[], applied: AppliedMigration[]): LoadedMigration[] {
  applied.forEach((done, i) => {
    const file = folder[i];
    if (!file) {
      throw new TandemError('history_mismatch', `migration "${done.name}" was applied but no file in the folder defines it`, {
        hint: 'restore its file (history and folder must agree), or point tandem at the right folder',
      });
    }
    if (file.migration.name !== done.name) {
      const elsewhere = folder.findIndex((f) => f.migration.name === done.name);
      throw new TandemError(
        'history_mismatch',
        elsewhere >= 0
          ? `migration "${done.name}" was applied as number ${i + 1}, but its file sorts as number ${elsewhere + 1}; "${file.migration.name}" sorts before it and was never applied`
          : `migration "${done.name}" was applied as number ${i + 1}, but the folder has "${file.migration.name}" there`,
        { file: file.file, hint: 'migration files are applied in name order; new migrations must sort after the applied ones' },
      );
    }
    if (file.digest !== done.digest) {
      throw new TandemError('history_mismatch', `migration "${done.name}" changed since it was applied`, {
        file: file.file,
        hint: 'applied migrations must not be edited; write a new migration for further changes',
      });
    }
  });
  return folder.slice(applied.length);
}
