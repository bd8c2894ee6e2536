import { rename, writeFile } from 'node:fs/promises';
import YAML from 'yaml';

export type MigrationFormat = 'json' | 'yaml';

/** A migration document as the text of its file. */
export function migrationText(document: unknown, format: MigrationFormat): string {
  if (format === 'json') return `${JSON.stringify(document, null, 2)}\n`;
  // Written out in full, as convert writes YAML: people read these files.
  return new YAML.Document(document, { aliasDuplicateObjects: false }).toString({ lineWidth: 0 });
}

/** Writes the file whole or not at all: a migration folder never holds half a file. */
export async function writeMigrationFile(path: string, document: unknown, format: MigrationFormat): Promise<void> {
  const partial = `${path}.tandem-partial`;
  await writeFile(partial, migrationText(document, format));
  await rename(partial, path);
}
