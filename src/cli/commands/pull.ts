import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Command } from 'commander';
import { withConnection } from '../../db/connection.js';
import { loadMigrationFolder } from '../../migration/folder.js';
import { upgradeMigration } from '../../migration/upgrade.js';
import { writeMigrationFile } from '../../migration/write.js';
import { MigrationStore } from '../../state/migrations.js';
import { stateSchemaExists } from '../../state/schema.js';
import { writeLine, type CliIO } from '../io.js';
import { commonSettings } from '../settings.js';

export function registerPull(program: Command, io: CliIO): void {
  program
    .command('pull')
    .description("write the database's migration history into DIR as files, those the folder does not have (as pgroll pull)")
    .argument('<dir>', 'folder of migration files; created when missing')
    .option('-j, --json', 'write JSON files instead of YAML')
    .action(async (dir: string, options: { json?: boolean }, cmd: Command) => {
      const settings = commonSettings(cmd, { logTo: io.stderr });
      await mkdir(dir, { recursive: true });
      const local = new Set((await loadMigrationFolder(dir)).map((loaded) => loaded.migration.name));
      const applied = await withConnection(settings.postgresUrl, async (db) =>
        (await stateSchemaExists(db, settings.stateSchema)) ? new MigrationStore(db, settings.stateSchema, settings.schema).applied() : [],
      );
      let written = 0;
      for (const record of applied) {
        // A baseline stands for the files before it and has no operations: there is nothing to write.
        if (local.has(record.name) || record.pgrollType === 'baseline') continue;
        const { document } = upgradeMigration(record.migration);
        const file = join(dir, `${record.name}.${options.json ? 'json' : 'yaml'}`);
        await writeMigrationFile(file, record.pgrollType ? withoutName(document) : document, options.json ? 'json' : 'yaml');
        writeLine(io.stdout, `wrote ${file}`);
        written++;
      }
      if (!written) writeLine(io.stdout, `the folder has every migration of the history (${applied.length})`);
    });
}

/**
 * pgroll stored each migration with a `name`, which pgroll since 0.13 refuses in a file (the file's
 * name is the migration's). A migration tandem ran keeps what its file had: its digest covers it.
 */
function withoutName(document: unknown): unknown {
  const { name: _name, ...rest } = document as Record<string, unknown>;
  return rest;
}
