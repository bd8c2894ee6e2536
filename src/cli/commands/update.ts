import type { Command } from 'commander';
import { dirname } from 'node:path';
import type { LoadedMigration } from '../../migration/load.js';
import { updateFolder } from '../../migration/update.js';
import type { Upgrade } from '../../migration/upgrade.js';
import { writeLine, type CliIO } from '../io.js';

export function registerUpdate(program: Command, io: CliIO): void {
  program
    .command('update')
    .description("rewrite the folder's migration files written for older pgroll releases in the current format (as pgroll update)")
    .argument('<dir>', 'folder of migration files (.json, .yaml, .yml)')
    .option('-j, --json', 'write the rewritten files as JSON (a YAML file becomes a .json file)')
    .action(async (dir: string, options: { json?: boolean }) => {
      const updated = await updateFolder(dir, options);
      for (const file of updated) {
        const where = file.writtenTo === file.file ? file.file : `${file.file} -> ${file.writtenTo}`;
        writeLine(io.stdout, `updated ${where}: ${describeUpgrades(file.upgrades)}`);
      }
      if (!updated.length) writeLine(io.stdout, 'every migration file is in the current format');
    });
}

/** Says which command brings a file in an older pgroll format up to date (it loads as it is). */
export function noteOutdated(io: CliIO, loaded: LoadedMigration): void {
  if (!loaded.upgrades.length) return;
  writeLine(io.stderr, `tandem: note: ${loaded.file} is in an older pgroll format, read as the current one (${describeUpgrades(loaded.upgrades)}); tandem update ${dirname(loaded.file)} rewrites it`);
}

function describeUpgrades(upgrades: Upgrade[]): string {
  return upgrades.map((u) => `operation ${u.operation} (${u.kind}): ${u.change}`).join('; ');
}
