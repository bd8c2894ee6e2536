import type { Command } from 'commander';
import { withConnection } from '../../db/connection.js';
import { importPgrollHistory, PGROLL_EVENT_TRIGGERS } from '../../engine/pgroll-import.js';
import { quoteIdent } from '../../core/quote.js';
import { initStateSchema } from '../../state/schema.js';
import { writeLine, type CliIO } from '../io.js';
import { commonSettings } from '../settings.js';

export function registerInit(program: Command, io: CliIO): void {
  program
    .command('init')
    .description('create the state schema (idempotent); --from-pgroll also takes over the history of a database pgroll manages')
    .option('--from-pgroll', "import pgroll's migration history and adopt its version schemas (pgroll's schema is left untouched)")
    // --pgroll-schema is a common option (pgroll scripts put it before any command).
    .action(async (flags: { fromPgroll?: boolean }, command: Command) => {
      const settings = commonSettings(command, { logTo: io.stderr });
      const options = { ...flags, pgrollSchema: command.optsWithGlobals<{ pgrollSchema: string }>().pgrollSchema };
      if (!options.fromPgroll) {
        await withConnection(settings.postgresUrl, (db) => initStateSchema(db, settings.stateSchema), { role: settings.role });
        writeLine(io.stdout, `state schema "${settings.stateSchema}" is ready`);
        return;
      }
      const result = await withConnection(settings.postgresUrl, (db) =>
        importPgrollHistory(db, { pgrollSchema: options.pgrollSchema, stateSchema: settings.stateSchema, schema: settings.schema }),
        { role: settings.role },
      );
      const { imported, history } = result;
      writeLine(io.stdout, `state schema "${settings.stateSchema}" is ready`);
      if (!imported.length) {
        writeLine(io.stdout, `pgroll's history of schema "${settings.schema}" (${history.length} migration${history.length === 1 ? '' : 's'}) was imported before; nothing new`);
      } else {
        writeLine(io.stdout, `imported ${imported.length} migration${imported.length === 1 ? '' : 's'} of schema "${settings.schema}" from pgroll's "${options.pgrollSchema}":`);
        for (const m of imported) writeLine(io.stdout, `  ${m.name}${m.migrationType === 'pgroll' ? '' : ` (${m.migrationType})`}`);
      }
      if (result.versionSchemas.length) writeLine(io.stdout, `adopted version schema${result.versionSchemas.length === 1 ? '' : 's'} ${result.versionSchemas.join(', ')}`);
      writeLine(io.stdout, `next: tandem migrate DIR applies the folder's migrations pgroll did not; pgroll's schema "${options.pgrollSchema}" is untouched`);
      writeLine(io.stdout, `once you will not go back to pgroll: DROP SCHEMA ${quoteIdent(options.pgrollSchema)} CASCADE${result.eventTriggers.length ? ` (after dropping its event triggers)` : ''}`);
      if (result.eventTriggers.length) {
        writeLine(io.stderr, `tandem: warning: pgroll's event triggers ${result.eventTriggers.join(', ')} are enabled: they record DDL run outside pgroll as "inferred" migrations in ${quoteIdent(options.pgrollSchema)}.migrations (tandem's own sessions tell them not to)`);
        writeLine(io.stderr, `hint: drop them when tandem takes over for good (as a superuser): ${PGROLL_EVENT_TRIGGERS.map((t) => `DROP EVENT TRIGGER ${t};`).join(' ')}`);
      }
    });
}
