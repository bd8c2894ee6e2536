/** Turns `tandem lint` arguments (files and directories) into the list of SQL files to read. */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { UsageError } from '../errors/index.js';

/**
 * Files as given, in the order given; directories searched recursively for `*.sql`, in name order
 * (the order migration tools apply them). A path that does not exist is a usage error.
 */
export async function collectSqlFiles(paths: readonly string[]): Promise<string[]> {
  const files: string[] = [];
  for (const path of paths) {
    let kind;
    try {
      kind = await stat(path);
    } catch {
      throw new UsageError(`no such file or directory: ${path}`);
    }
    if (kind.isDirectory()) files.push(...(await sqlFilesUnder(path)));
    else files.push(path);
  }
  return [...new Set(files)];
}

async function sqlFilesUnder(directory: string): Promise<string[]> {
  const entries = await readdir(directory, { withFileTypes: true });
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const found: string[] = [];
  for (const entry of entries) {
    const path = join(directory, entry.name);
    if (entry.isDirectory()) found.push(...(await sqlFilesUnder(path)));
    else if (entry.isFile() && entry.name.toLowerCase().endsWith('.sql')) found.push(path);
  }
  return found;
}
