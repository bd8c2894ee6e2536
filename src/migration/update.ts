import { rm } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { listMigrationFiles } from './folder.js';
import { loadMigrationFile } from './load.js';
import { upgradeMigration, type Upgrade } from './upgrade.js';
import { writeMigrationFile, type MigrationFormat } from './write.js';

export interface UpdatedFile {
  file: string;
  /** Where the current form went: another path than `file` when --json turned YAML into JSON. */
  writtenTo: string;
  upgrades: Upgrade[];
}

/**
 * Rewrites every file of the folder that uses an older pgroll format into the current one, the
 * way `pgroll update` does; files already current are not touched. Every file is loaded (and so
 * validated) before any is written, so a folder with a broken file is left as it was.
 */
export async function updateFolder(dir: string, options: { json?: boolean } = {}): Promise<UpdatedFile[]> {
  const files = await listMigrationFiles(dir);
  const outdated = [];
  for (const name of files) {
    const loaded = await loadMigrationFile(join(dir, name));
    if (loaded.upgrades.length) outdated.push(loaded);
  }
  const updated: UpdatedFile[] = [];
  for (const loaded of outdated) {
    const { document, upgrades } = upgradeMigration(loaded.raw);
    const extension = extname(loaded.file);
    const format: MigrationFormat = options.json || extension.toLowerCase() === '.json' ? 'json' : 'yaml';
    const writtenTo = format === 'json' && extension.toLowerCase() !== '.json' ? `${loaded.file.slice(0, -extension.length)}.json` : loaded.file;
    await writeMigrationFile(writtenTo, document, format);
    if (writtenTo !== loaded.file) await rm(loaded.file);
    updated.push({ file: loaded.file, writtenTo, upgrades });
  }
  return updated;
}
