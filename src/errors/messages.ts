import type { ErrorFact, ErrorKind, FactOf } from './index.js';
import type { Phase, StackRefusal, StepAt, VersionSchemaConflict } from './state.js';

/**
 * The words of every error tandem reports, from its kind and facts. A kind without an entry in
 * MESSAGES does not compile, so a new kind cannot ship without its sentence.
 */
type Words<R> = { [K in ErrorKind]: (fact: FactOf<K>) => R };

const SPLIT_HINT = 'split it into several migrations (tandem migrate DIR applies a folder of them in order)';

const MESSAGES: Words<string> = {
  // planning
  table_unknown: (f) => `table "${f.table}" does not exist in schema "${f.schema}"`,
  column_unknown: (f) => (f.newTable ? `column "${f.column}" is not one of the table's columns` : `column "${f.column}" does not exist in table "${f.table}"`),
  column_exists: (f) => `column "${f.column}" already exists in table "${f.table}"`,
  column_duplicate: (f) => `column "${f.column}" is defined twice`,
  column_generated: () => 'a column is either generated from an expression or an identity, not both',
  table_exists: (f) => `a table or index named "${f.name}" already exists in schema "${f.schema}"`,
  index_exists: (f) => `a table or index named "${f.name}" already exists in schema "${f.schema}"`,
  index_unknown: (f) => `index "${f.index}" does not exist in schema "${f.schema}"`,
  index_is_constraint: (f) => `index "${f.index}" implements constraint "${f.constraint}" of table "${f.table}"`,
  constraint_exists: (f) => `table "${f.table}" already has a constraint "${f.constraint}"`,
  constraint_unknown: (f) => `table "${f.table}" has no constraint "${f.constraint}"`,
  constraint_columns: (f) => `a ${f.type} constraint needs columns`,
  constraint_sql_column: (f) =>
    f.constraint
      ? `"${f.column}" is not one of the columns of constraint "${f.constraint.name}" (${f.constraint.columns.join(', ')})`
      : `"${f.column}" is not one of the constraint's columns`,
  constraint_references: () => 'a foreign_key constraint needs references',
  constraint_check: () => 'a check constraint needs its check expression',
  constraint_exclude: () => 'an exclude constraint needs exclude.elements',
  constraint_multicolumn: (f) => `constraint "${f.constraint}" spans columns ${f.columns.join(', ')}`,
  constraint_referenced: (f) => `foreign key ${f.foreignKeys.map((fk) => `"${fk.name}" of ${fk.table}`).join(', ')} depends on constraint "${f.constraint}"`,
  primary_key_exists: (f) => `table "${f.table}" already has a primary key (${f.columns.join(', ')})`,
  primary_key_twice: () => 'the table has pk columns and a primary_key constraint; use one',
  replica_identity_type: (f) => `unknown replica identity "${f.identity}"`,
  replica_identity_index: () => 'identity type "index" needs the index name',
  alter_column_empty: (f) => `alter_column of "${f.table}.${f.column}" changes nothing`,
  alter_generated: (f) => `column "${f.column}" is generated from an expression: its value cannot be synced`,
  add_column_pk: () => 'pk cannot be set when adding a column to an existing table',
  add_column_not_null: (f) => `column "${f.column}" is NOT NULL without a default, so existing rows need a value`,
  sql_not_isolated: () => 'a sql operation that runs at start must be the only operation of its migration',
  expression_invalid: (f) => (f.type ? `not a valid ${f.type} expression: ${f.reason}` : `the expression does not work: ${f.reason}`),
  planning_database_error: (f) => `planning failed: ${f.reason}`,
  planning_internal_error: (f) => `planning failed: ${f.reason}`,
  lock_timeout: (f) => {
    const what = f.table ? `a lock on ${f.table}` : 'the locks it needs';
    const holders = f.holders.length
      ? `; held by ${f.holders.map((h) => `pid ${h.pid} (${h.mode}, ${h.state ?? 'unknown state'}: ${JSON.stringify(h.query ?? '')})`).join(', ')}`
      : '';
    return `"${f.step}" could not get ${what} within lock_timeout ${f.lockTimeoutMs} ms, ${f.attempts} times${holders}`;
  },

  // migration files
  migration_file_type: (f) => `unsupported file type "${f.extension || '(none)'}"`,
  migration_file_unreadable: (f) => (f.errno === 'ENOENT' ? 'no such file' : `cannot read the file (${f.errno})`),
  migration_file_too_large: (f) => `the file has ${f.bytes} bytes; a migration file may have at most ${f.maxBytes} (${mebibytes(f.maxBytes)})`,
  migration_unloadable: (f) => `cannot load the migration: ${f.reason}`,
  migration_syntax: (f) => {
    if (f.format === 'json') return `not valid JSON: ${f.reason}`;
    return `not valid YAML${f.line === undefined ? '' : ` at line ${f.line}, column ${f.column}`}: ${f.reason}`;
  },
  migration_too_many_operations: (f) => `the migration has ${f.count} operations; a migration may have at most ${f.max}`,
  migration_empty: () => 'the migration has no operations',
  migration_name_invalid: (f) => {
    const what = f.source === 'file name' ? `the migration name ${JSON.stringify(f.value)} (the file name, as the file sets no name)` : JSON.stringify(f.value);
    return `${what} contains ${f.character} at character ${f.position}: ${f.why}`;
  },
  operation_shape: (f) => {
    if (!f.keys) return 'an operation must be an object with exactly one key, its kind (e.g. add_column)';
    if (!f.keys.length) return 'empty operation: expected one key naming its kind (e.g. add_column)';
    return `an operation has exactly one key, its kind; found ${f.keys.map((k) => `"${k}"`).join(', ')}`;
  },
  operation_unknown: (f) => `unknown operation "${f.name}"`,
  migration_invalid: (f) => f.message,
  review_placeholder: (f) => {
    const lines = f.moreLines.length ? `, on line ${f.moreLines.join(', ')}` : '';
    const others = f.more ? ` (and ${f.more} more${lines})` : '';
    return `${f.line ? `line ${f.line}: ` : ''}a placeholder from tandem convert is still here: ${JSON.stringify(f.value)}${others}`;
  },
  migration_duplicate: (f) => `two files define migration "${f.name}": ${f.files[0]} and ${f.files[1]}`,
  folder_unreadable: (f) => (f.errno === 'ENOENT' ? `no such folder "${f.dir}"` : `cannot read folder "${f.dir}" (${f.errno})`),
  history_mismatch: (f) => {
    switch (f.problem) {
      case 'file_missing':
        return `migration "${f.name}" was applied but no file in the folder defines it`;
      case 'sorts_elsewhere':
        return `migration "${f.name}" was applied as number ${f.appliedAs}, but its file sorts as number ${f.sortsAs}; "${f.before}" sorts before it and was never applied`;
      case 'other_file':
        return `migration "${f.name}" was applied as number ${f.appliedAs}, but the folder has "${f.found}" there`;
      case 'changed':
        return `migration "${f.name}" changed since it was applied`;
    }
  },

  // lifecycle state
  migration_in_flight: (f) => `migration "${f.name}" is ${describeStatus(f.status)}`,
  migration_already_started: (f) => `migration "${f.name}" is already ${describeStatus(f.status)}`,
  migration_changed: (f) => `migration "${f.name}" was started from different content than this file has now`,
  migration_applied: (f) => `migration "${f.name}" was already applied`,
  stack_full: (f) =>
    f.starting
      ? `starting ${quotedList(f.starting)} would leave ${f.active.length + f.starting.length} migrations active${f.active.length ? ` (with ${quotedList(f.active)})` : ''}, and --max-active-migrations ${f.max} allows ${f.max}`
      : `${f.active.length === 1 ? `migration "${f.active[0]}" is` : `migrations ${quotedList(f.active)} are`} active, and --max-active-migrations ${f.max} allows no more`,
  stack_conflict: (f) =>
    `active migration "${f.name}" changes ${f.tables.length === 1 ? 'table' : 'tables'} ${f.tables.map((t) => `"${t}"`).join(', ')}, which this migration touches too (by name or through a foreign key); it was started by a tandem that did not keep its version of its tables, so a migration stacked on it must keep to other tables`,
  stack_refused: (f) => describeStackRefusal(f.name, f.reason, f.pending === true),
  stack_unfinished: (f) =>
    `this migration changes ${f.objectKind} "${f.object}" of table "${f.table}", which active migration "${f.name}" has not finished changing: a stacked migration builds on what an active one changed, but cannot change it again before that one completes`,
  nothing_to_resume: (f) => (f.current ? `migration "${f.current.name}" is ${describeStatus(f.current.status)}: its start is finished` : 'no migration is being started'),
  nothing_active: (f) => `no migration is active in schema "${f.schema}"${f.fresh ? ' (tandem has not been used on this database yet)' : ''}`,
  no_versions: (f) => `no migration has been applied to schema "${f.schema}" yet`,
  start_unfinished: (f) => `migration "${f.name}" did not finish starting (stopped at step ${f.step})`,
  rollback_unfinished: (f) => `migration "${f.name}" is being rolled back`,
  complete_partly_done: (f) => `migration "${f.name}" is partly completed: "${f.step}" already ran`,
  complete_check_failed: (f) =>
    `complete of "${f.name}" ran every step, but ${f.missing.length === 1 ? 'an object it created is' : `${f.missing.length} objects it created are`} missing: ${f.missing.join('; ')}`,
  version_in_use: (f) => {
    const count = f.clients === null ? 'an unknown number of clients (no live proxy reports it)' : `${f.clients} live client${f.clients === 1 ? '' : 's'}`;
    return `version ${f.versionSchema} still has ${count}: ${f.details.join('; ')}`;
  },
  version_schema_too_long: (f) => `the version schema name "${f.versionSchema}" is longer than PostgreSQL's 63 bytes`,
  version_schema_taken: (f) => `the version schema "${f.versionSchema}" ${describeConflict(f.conflict)}`,
  schema_unknown: (f) => `schema "${f.schema}" does not exist`,
  busy: (f) => {
    const h = f.holder;
    const who = h ? ` (server pid ${h.pid}, ${h.who}, ${h.state ?? 'unknown state'} since ${h.since ?? '?'}${h.state === 'active' && h.query ? `: ${JSON.stringify(h.query)}` : ''})` : '';
    return `another tandem process is migrating schema "${f.schema}" right now${who}`;
  },
  state_changed: (f) => `migration "${f.name}" was changed by another tandem process meanwhile`,
  phase_failed: (f) => (f.step ? `${f.phase} of "${f.name}" failed at ${describeStep(f.step)}: ${f.reason}` : f.reason),
  connection_lost: (f) => {
    const where = f.step ? ` at ${describeStep(f.step)}` : '';
    const waited = f.reconnectSeconds === undefined ? '' : ` and could not reconnect within ${f.reconnectSeconds} s`;
    return `lost the connection to PostgreSQL during ${f.phase} of "${f.name}"${where}${waited}: ${f.reason}`;
  },

  // tools
  usage: (f) => f.message,
  connect_failed: (f) => `could not connect to PostgreSQL at ${f.address}: ${f.reason}`,
  listen_failed: (f) => `the proxy cannot listen on ${f.address} (${f.flag}): ${f.reason}`,
  lint_findings: (f) => `${f.count} problem${f.count === 1 ? '' : 's'} found`,
  lint_unreadable: (f) => `cannot read the file (${f.errno})`,
  sql_syntax: (f) => (f.position ? `line ${f.position.line}, column ${f.position.column}: ${f.reason}` : `the SQL parser failed: ${f.reason}`),
  convert_empty: (f) => (f.source === 'file' ? 'the file has no statement to convert' : 'the folder holds no SQL migration'),
  convert_invalid: (f) => `the converted migration ${f.name} does not validate: ${f.reason}`,
  convert_unreadable: (f) => {
    switch (f.problem) {
      case 'file':
        return `cannot read the file (${f.errno})`;
      case 'folder':
        return `cannot read the folder (${f.errno})`;
      case 'journal_lists_missing':
        return `meta/_journal.json lists ${f.files.join(', ')}, which the folder does not have`;
      case 'journal_not_json':
        return `not valid JSON: ${f.reason}`;
      case 'journal_shape':
        return 'expected Drizzle\'s journal: {"entries": [{"idx": 0, "tag": "0000_name", ...}, ...]}';
    }
  },

  // coming from pgroll
  more_than_one_pending: (f) => `--expect-one: ${f.names.length} migrations are waiting to be applied (${f.names.join(', ')})`,
  pgroll_state_missing: (f) => `pgroll's state schema "${f.pgrollSchema}" does not exist (or has no migrations table)`,
  pgroll_migration_active: (f) => `pgroll's migration "${f.name}" on schema "${f.schema}" is active (started, not completed)`,
  pgroll_history_broken: (f) => `pgroll's history is not one chain: migration "${f.name}" has parent ${f.parent === null ? '(none)' : `"${f.parent}"`}, which is not the one before it`,
  pgroll_import_conflict: (f) => `tandem's state schema "${f.stateSchema}" already records ${f.applied} migration${f.applied === 1 ? '' : 's'} on schema "${f.schema}"`,
};

/** What the user can do, where that follows from the kind and its facts; a throw site may give its own. */
const HINTS: Partial<Words<string | undefined>> = {
  stack_full: (f) =>
    f.starting ? `raise --max-active-migrations, or run migrate without --stack (it completes each migration before the next)` : `complete "${f.active[0]}" first, or raise --max-active-migrations`,
  stack_conflict: (f) => `complete "${f.name}" first`,
  stack_unfinished: (f) => `complete "${f.name}" first`,
  stack_refused: (f) =>
    f.pending
      ? 'run migrate without --stack (it completes each migration before the next)'
      : f.reason === 'complete'
        ? `start it without --complete, then complete "${f.name}" and it in turn`
        : `complete "${f.name}" first`,
  table_unknown: (f) => (f.known.length ? `tables the new version sees: ${[...f.known].sort().join(', ')}` : 'the schema has no tables yet'),
  column_unknown: (f) => (f.newTable ? undefined : `columns the new version sees: ${f.known.join(', ')}`),
  index_is_constraint: () => 'drop the constraint instead (drop_constraint)',
  constraint_unknown: (f) => (f.known.length ? `its constraints: ${f.known.join(', ')}` : 'it has no constraints'),
  constraint_multicolumn: () => 'use drop_multicolumn_constraint, with up and down for each column',
  constraint_referenced: () => 'drop those foreign keys first',
  primary_key_exists: () => 'drop it first (drop_constraint), in an earlier migration',
  replica_identity_type: (f) => `one of ${f.known.join(', ')}`,
  alter_column_empty: (f) => `give at least one of ${f.changes.join(', ')} (renames are rename_column)`,
  alter_generated: () => 'drop it and add a new generated column instead',
  add_column_pk: () => 'add the column, then a create_constraint of type primary_key',
  add_column_not_null: () => 'give `up` (an expression over the existing columns), a default, or set nullable: true',
  sql_not_isolated: () => 'tandem cannot see what raw SQL changes, so put it in a migration of its own (or set onComplete: true)',
  planning_database_error: () => 'nothing was changed; fix the cause the database names and start again',
  planning_internal_error: () => 'nothing was changed; this is a defect in tandem: please report it with this migration file',
  lock_timeout: () => 'nothing of this step was applied; retry once the blocking session is done, or raise --lock-timeout',

  migration_file_type: () => 'migrations are .json, .yaml or .yml files',
  migration_file_too_large: () => SPLIT_HINT,
  migration_too_many_operations: () => SPLIT_HINT,
  migration_name_invalid: (f) =>
    ({
      name: 'a migration name is usually letters, digits, "_", "-" and "." (e.g. 02_add_email); fix `name`, or remove it to use the file name',
      'file name': 'rename the file (e.g. 02_add_email.yaml), or set `name` in it',
      version_schema: 'a version schema name is usually letters, digits and "_" (e.g. public_02_add_email); fix `version_schema`, or remove it to use <schema>_<migration name>',
    })[f.source],
  operation_shape: (f) => (f.keys ? 'split them into separate items of "operations"' : undefined),
  operation_unknown: (f) => (f.suggestion ? `did you mean "${f.suggestion}"?` : `known operations: ${f.known.join(', ')}`),
  review_placeholder: () =>
    'replace it with the SQL expression it asks for (the REVIEW comment above the operation says what is needed), then run the command again',
  history_mismatch: (f) => {
    switch (f.problem) {
      case 'file_missing':
        return 'restore its file (history and folder must agree), or point tandem at the right folder';
      case 'changed':
        return 'applied migrations must not be edited; write a new migration for further changes';
      default:
        return 'migration files are applied in name order; new migrations must sort after the applied ones';
    }
  },

  migration_changed: () => 'restore the file as it was to resume, or run tandem rollback and start again',
  nothing_to_resume: () => 'tandem status shows where things stand',
  start_unfinished: () => 'run tandem start with the same file to resume it, or tandem rollback',
  complete_partly_done: () => 'run tandem complete again to finish it',
  complete_check_failed: (f) => `"${f.name}" stays being completed: recreate what is missing (or fix the cause) and run tandem complete again, which checks again and finishes`,
  version_in_use: (f) =>
    f.waited
      ? 'the clients did not leave in time; retire them (deploy the new version) and try again, or --force'
      : 'move its clients to the new version first, or wait with --wait-for-drain DURATION; --force retires it anyway',
  version_schema_too_long: () => 'shorten the migration name or set version_schema',
  version_schema_taken: (f) =>
    f.fromFile ? 'choose a version_schema that names no existing schema' : 'rename the migration, or set version_schema to a name no schema has',
  schema_unknown: () => 'create it, or pass the right --schema',
  busy: (f) =>
    f.holder
      ? `wait for it to finish (tandem status shows what it is doing); if that process was killed, its server session ends by itself after its current statement (within seconds: tandem sets client_connection_check_interval), or end it now with SELECT pg_terminate_backend(${f.holder.pid})`
      : 'wait for it to finish; tandem status shows what it is doing',
  state_changed: () => 'tandem status shows where it stands now',
  connection_lost: (f) => resumeAfterLostConnection(f.phase, f.name, f.file),

  connect_failed: () => 'check --postgres-url, DATABASE_URL or the PG* variables, and that the server is up',
  listen_failed: (f) => `stop whatever holds ${f.address}, or choose another address with ${f.flag}; the proxy started nothing`,
  convert_empty: (f) => (f.source === 'file' ? 'a migration needs at least one operation' : undefined),
  convert_invalid: () => 'this is a bug in tandem convert; please report it with the SQL statement',

  more_than_one_pending: () => 'nothing was applied; apply them one deploy at a time, or run without --expect-one',
  pgroll_state_missing: () => 'pass --pgroll-schema when pgroll ran with another --pgroll-schema (PGROLL_STATE_SCHEMA)',
  pgroll_migration_active: () => 'nothing was imported; finish it with pgroll first (pgroll complete, or pgroll rollback), then run tandem init --from-pgroll again',
  pgroll_history_broken: () => 'nothing was imported; pgroll status and pgroll pull show the history pgroll sees',
  pgroll_import_conflict: () => 'nothing was imported: tandem already manages this schema here; import into an empty state schema (--state-schema)',
};

export function messageOf(fact: ErrorFact): string {
  return (MESSAGES[fact.kind] as (fact: ErrorFact) => string)(fact);
}

export function hintOf(fact: ErrorFact): string | undefined {
  return (HINTS[fact.kind] as ((fact: ErrorFact) => string | undefined) | undefined)?.(fact);
}

/** What a phase's failure at a step leaves behind, and so what the user does next. */
export function afterPhaseFailure(phase: Phase, name: string, stillActive: boolean): string {
  switch (phase) {
    case 'start':
      return 'everything start did was rolled back: the database is as it was before';
    case 'complete':
      return stillActive
        ? `nothing was dropped: "${name}" is still active; fix the cause and run tandem complete again, or tandem rollback`
        : 'fix the cause and run tandem complete again: it resumes at this step';
    case 'rollback':
      return 'fix the cause and run tandem rollback again: it resumes at this step';
  }
}

function resumeAfterLostConnection(phase: Phase, name: string, file: string | undefined): string {
  switch (phase) {
    case 'start':
      return `nothing was rolled back: "${name}" stays "starting" with every step before this one done (the server undid the unfinished one). Once PostgreSQL is reachable, run tandem start ${file ?? 'FILE'} again (or tandem backfill) to go on, or tandem rollback to undo it`;
    case 'complete':
      return `"${name}" stays "completing" with every step before this one done. Once PostgreSQL is reachable, run tandem complete again to finish it`;
    case 'rollback':
      return `"${name}" stays "rolling_back" with every step before this one done. Once PostgreSQL is reachable, run tandem rollback again to finish it`;
  }
}

function quotedList(names: string[]): string {
  return names.map((n) => `"${n}"`).join(', ');
}

function describeStackRefusal(name: string, reason: StackRefusal, pending: boolean): string {
  const stacked = pending ? `cannot be stacked on migration "${name}", before it in the folder` : `cannot start while migration "${name}" is active`;
  switch (reason) {
    case 'raw_sql':
      return `${stacked}: this migration runs raw SQL, which may touch any table`;
    case 'active_raw_sql':
      return `${stacked}: it runs raw SQL, which may touch any table`;
    case 'no_version_schema':
      return `${stacked}: a migration without a version schema cannot be stacked`;
    case 'active_no_version_schema':
      return `${stacked}: it has no version schema to build on`;
    case 'planned_before_stacking':
      return `${stacked}: it was started by a tandem from before stacked migrations, which did not record the tables it touches`;
    case 'complete':
      return `cannot start and complete at once while migration "${name}" is active: the oldest active migration completes first`;
  }
}

function describeStep(step: StepAt): string {
  return `step ${step.index} of ${step.total} ("${step.description}")`;
}

function describeStatus(status: string): string {
  switch (status) {
    case 'starting':
      return 'being started (or its start was interrupted)';
    case 'completing':
      return 'being completed (or its complete was interrupted)';
    case 'rolling_back':
      return 'being rolled back (or its rollback was interrupted)';
    default:
      return status;
  }
}

function describeConflict(conflict: VersionSchemaConflict): string {
  switch (conflict.with) {
    case 'migrated_schema':
      return 'is the schema being migrated';
    case 'state_schema':
      return "is tandem's state schema";
    case 'system_schema':
      return 'is a name PostgreSQL reserves for system schemas';
    case 'live_version':
      return `is the live version of migration "${conflict.migration}"`;
    case 'existing_schema':
      return `already exists (owned by ${conflict.owner}): start would take it over and complete or rollback would drop it`;
  }
}

function mebibytes(bytes: number): string {
  return `${Number((bytes / 2 ** 20).toFixed(1))} MiB`;
}
