/**
 * `tandem baseline`: the schema as it stands becomes the start of the history, as pgroll baseline
 * does it. Nothing runs; the record tells `migrate` that the files named up to the baseline are the
 * past it stands for (see unappliedMigrations).
 */
import type { Queryable } from '../db/connection.js';
import { TandemError } from '../errors/index.js';
import { digestOf } from '../migration/load.js';
import { versionSchemaName } from '../migration/names.js';
import { underMigrationLock } from '../state/migration-lock.js';
import { actor, MigrationStore } from '../state/migrations.js';
import { initStateSchema } from '../state/schema.js';

/** The placeholder file of a baseline, as pgroll writes it: one sql operation that runs nothing. */
export const BASELINE_PLACEHOLDER = { operations: [{ sql: { up: '' } }] };

export async function recordBaseline(db: Queryable, options: { stateSchema: string; schema: string; version: string }): Promise<void> {
  const { stateSchema, schema, version } = options;
  await initStateSchema(db, stateSchema);
  await underMigrationLock(db, stateSchema, schema, async () => {
    const store = new MigrationStore(db, stateSchema, schema);
    const inFlight = await store.inFlight();
    if (inFlight) {
      throw new TandemError({ kind: 'migration_in_flight', name: inFlight.name, status: inFlight.status }, { hint: 'complete it or roll it back before tandem baseline' });
    }
    const applied = await store.applied();
    if (applied.some((record) => record.name === version)) throw new TandemError({ kind: 'migration_applied', name: version });
    const now = new Date();
    await store.insertApplied({
      name: version,
      versionSchema: versionSchemaName({ name: version }, schema),
      parent: applied.at(-1)?.name ?? null,
      digest: digestOf(BASELINE_PLACEHOLDER),
      migration: BASELINE_PLACEHOLDER,
      pgrollType: 'baseline',
      createdAt: now,
      updatedAt: now,
      by: actor(),
    });
  });
}
