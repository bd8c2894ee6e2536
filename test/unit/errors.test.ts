import { describe, expect, it } from 'vitest';
import { type ErrorKind, type FactOf, formatError, TandemError, UsageError } from '../../src/errors/index.js';

/**
 * The words of every error kind, checked once here: the other tests compare kinds and facts. The
 * table is keyed by kind, so a kind added to the union without its words here does not compile.
 */
interface Case<K extends ErrorKind> {
  fact: FactOf<K>;
  message: string;
  hint?: string;
}
type Cases = { [K in ErrorKind]: Case<K>[] };

const SPLIT = 'split it into several migrations (tandem migrate DIR applies a folder of them in order)';

const CASES: Cases = {
  table_unknown: [
    { fact: { kind: 'table_unknown', schema: 'public', table: 'userz', known: ['users', 'teams'] }, message: 'table "userz" does not exist in schema "public"', hint: 'tables the new version sees: teams, users' },
    { fact: { kind: 'table_unknown', schema: 'public', table: 'userz', known: [] }, message: 'table "userz" does not exist in schema "public"', hint: 'the schema has no tables yet' },
  ],
  column_unknown: [
    { fact: { kind: 'column_unknown', table: 'users', column: 'mail', known: ['id', 'email'] }, message: 'column "mail" does not exist in table "users"', hint: 'columns the new version sees: id, email' },
    { fact: { kind: 'column_unknown', table: 'books', column: 'isbn', known: ['id'], newTable: true }, message: 'column "isbn" is not one of the table\'s columns' },
  ],
  column_exists: [{ fact: { kind: 'column_exists', table: 'users', column: 'email' }, message: 'column "email" already exists in table "users"' }],
  column_duplicate: [{ fact: { kind: 'column_duplicate', column: 'a' }, message: 'column "a" is defined twice' }],
  column_generated: [{ fact: { kind: 'column_generated' }, message: 'a column is either generated from an expression or an identity, not both' }],
  table_exists: [{ fact: { kind: 'table_exists', schema: 'public', name: 'users' }, message: 'a table or index named "users" already exists in schema "public"' }],
  index_exists: [{ fact: { kind: 'index_exists', schema: 'public', name: 'users_pkey' }, message: 'a table or index named "users_pkey" already exists in schema "public"' }],
  index_unknown: [{ fact: { kind: 'index_unknown', schema: 'public', index: 'ix' }, message: 'index "ix" does not exist in schema "public"' }],
  index_is_constraint: [
    { fact: { kind: 'index_is_constraint', index: 'users_pkey', constraint: 'users_pkey', table: 'users' }, message: 'index "users_pkey" implements constraint "users_pkey" of table "users"', hint: 'drop the constraint instead (drop_constraint)' },
  ],
  constraint_exists: [{ fact: { kind: 'constraint_exists', table: 'users', constraint: 'c' }, message: 'table "users" already has a constraint "c"' }],
  constraint_unknown: [
    { fact: { kind: 'constraint_unknown', table: 'users', constraint: 'c', known: ['a', 'b'] }, message: 'table "users" has no constraint "c"', hint: 'its constraints: a, b' },
    { fact: { kind: 'constraint_unknown', table: 'users', constraint: 'c', known: [] }, message: 'table "users" has no constraint "c"', hint: 'it has no constraints' },
  ],
  constraint_columns: [{ fact: { kind: 'constraint_columns', type: 'unique' }, message: 'a unique constraint needs columns' }],
  constraint_sql_column: [
    { fact: { kind: 'constraint_sql_column', column: 'x' }, message: '"x" is not one of the constraint\'s columns' },
    { fact: { kind: 'constraint_sql_column', column: 'x', constraint: { name: 'ab', columns: ['a', 'b'] } }, message: '"x" is not one of the columns of constraint "ab" (a, b)' },
  ],
  constraint_references: [{ fact: { kind: 'constraint_references' }, message: 'a foreign_key constraint needs references' }],
  constraint_check: [{ fact: { kind: 'constraint_check' }, message: 'a check constraint needs its check expression' }],
  constraint_exclude: [{ fact: { kind: 'constraint_exclude' }, message: 'an exclude constraint needs exclude.elements' }],
  constraint_multicolumn: [
    { fact: { kind: 'constraint_multicolumn', constraint: 'ab', columns: ['a', 'b'] }, message: 'constraint "ab" spans columns a, b', hint: 'use drop_multicolumn_constraint, with up and down for each column' },
  ],
  constraint_referenced: [
    {
      fact: { kind: 'constraint_referenced', constraint: 'teams_pkey', foreignKeys: [{ name: 'fk1', table: 'users' }, { name: 'fk2', table: 'games' }] },
      message: 'foreign key "fk1" of users, "fk2" of games depends on constraint "teams_pkey"',
      hint: 'drop those foreign keys first',
    },
  ],
  primary_key_exists: [
    { fact: { kind: 'primary_key_exists', table: 'users', columns: ['id', 'org'] }, message: 'table "users" already has a primary key (id, org)', hint: 'drop it first (drop_constraint), in an earlier migration' },
  ],
  primary_key_twice: [{ fact: { kind: 'primary_key_twice' }, message: 'the table has pk columns and a primary_key constraint; use one' }],
  replica_identity_type: [
    { fact: { kind: 'replica_identity_type', identity: 'some', known: ['default', 'full'] }, message: 'unknown replica identity "some"', hint: 'one of default, full' },
  ],
  replica_identity_index: [{ fact: { kind: 'replica_identity_index' }, message: 'identity type "index" needs the index name' }],
  alter_column_empty: [
    { fact: { kind: 'alter_column_empty', table: 'users', column: 'email', changes: ['type', 'check'] }, message: 'alter_column of "users.email" changes nothing', hint: 'give at least one of type, check (renames are rename_column)' },
  ],
  alter_generated: [
    { fact: { kind: 'alter_generated', column: 'g' }, message: 'column "g" is generated from an expression: its value cannot be synced', hint: 'drop it and add a new generated column instead' },
  ],
  add_column_pk: [{ fact: { kind: 'add_column_pk' }, message: 'pk cannot be set when adding a column to an existing table', hint: 'add the column, then a create_constraint of type primary_key' }],
  add_column_not_null: [
    {
      fact: { kind: 'add_column_not_null', column: 'age' },
      message: 'column "age" is NOT NULL without a default, so existing rows need a value',
      hint: 'give `up` (an expression over the existing columns), a default, or set nullable: true',
    },
  ],
  sql_not_isolated: [
    {
      fact: { kind: 'sql_not_isolated' },
      message: 'a sql operation that runs at start must be the only operation of its migration',
      hint: 'tandem cannot see what raw SQL changes, so put it in a migration of its own (or set onComplete: true)',
    },
  ],
  expression_invalid: [
    { fact: { kind: 'expression_invalid', reason: 'column "emial" does not exist' }, message: 'the expression does not work: column "emial" does not exist' },
    { fact: { kind: 'expression_invalid', reason: 'syntax error', type: 'int' }, message: 'not a valid int expression: syntax error' },
  ],
  planning_database_error: [
    { fact: { kind: 'planning_database_error', reason: 'database error 42501: denied' }, message: 'planning failed: database error 42501: denied', hint: 'nothing was changed; fix the cause the database names and start again' },
  ],
  planning_internal_error: [
    { fact: { kind: 'planning_internal_error', reason: 'boom' }, message: 'planning failed: boom', hint: 'nothing was changed; this is a defect in tandem: please report it with this migration file' },
  ],
  lock_timeout: [
    {
      fact: { kind: 'lock_timeout', step: 'add column x', table: 'public.users', lockTimeoutMs: 500, attempts: 3, holders: [{ pid: 42, mode: 'AccessShareLock', state: 'idle in transaction', query: 'SELECT 1' }] },
      message: '"add column x" could not get a lock on public.users within lock_timeout 500 ms, 3 times; held by pid 42 (AccessShareLock, idle in transaction: "SELECT 1")',
      hint: 'nothing of this step was applied; retry once the blocking session is done, or raise --lock-timeout',
    },
    {
      fact: { kind: 'lock_timeout', step: 'raw sql', lockTimeoutMs: 500, attempts: 1, holders: [] },
      message: '"raw sql" could not get the locks it needs within lock_timeout 500 ms, 1 times',
      hint: 'nothing of this step was applied; retry once the blocking session is done, or raise --lock-timeout',
    },
  ],

  migration_file_type: [{ fact: { kind: 'migration_file_type', extension: '' }, message: 'unsupported file type "(none)"', hint: 'migrations are .json, .yaml or .yml files' }],
  migration_file_unreadable: [
    { fact: { kind: 'migration_file_unreadable', errno: 'ENOENT' }, message: 'no such file' },
    { fact: { kind: 'migration_file_unreadable', errno: 'EACCES' }, message: 'cannot read the file (EACCES)' },
  ],
  migration_file_too_large: [
    { fact: { kind: 'migration_file_too_large', bytes: 2_000_000, maxBytes: 1_048_576 }, message: 'the file has 2000000 bytes; a migration file may have at most 1048576 (1 MiB)', hint: SPLIT },
  ],
  migration_unloadable: [{ fact: { kind: 'migration_unloadable', reason: 'boom' }, message: 'cannot load the migration: boom' }],
  migration_syntax: [
    { fact: { kind: 'migration_syntax', format: 'json', reason: 'Unexpected end' }, message: 'not valid JSON: Unexpected end' },
    { fact: { kind: 'migration_syntax', format: 'yaml', reason: 'bad', line: 3, column: 7 }, message: 'not valid YAML at line 3, column 7: bad' },
    { fact: { kind: 'migration_syntax', format: 'yaml', reason: 'too many aliases' }, message: 'not valid YAML: too many aliases' },
  ],
  migration_too_many_operations: [
    { fact: { kind: 'migration_too_many_operations', count: 1001, max: 1000 }, message: 'the migration has 1001 operations; a migration may have at most 1000', hint: SPLIT },
  ],
  migration_empty: [{ fact: { kind: 'migration_empty' }, message: 'the migration has no operations' }],
  migration_name_invalid: [
    {
      fact: { kind: 'migration_name_invalid', value: 'public_02@v2', source: 'version_schema', character: '"@"', position: 10, why: 'why' },
      message: '"public_02@v2" contains "@" at character 10: why',
      hint: 'a version schema name is usually letters, digits and "_" (e.g. public_02_add_email); fix `version_schema`, or remove it to use <schema>_<migration name>',
    },
    {
      fact: { kind: 'migration_name_invalid', value: '03 x', source: 'file name', character: 'a space', position: 3, why: 'why' },
      message: 'the migration name "03 x" (the file name, as the file sets no name) contains a space at character 3: why',
      hint: 'rename the file (e.g. 02_add_email.yaml), or set `name` in it',
    },
    {
      fact: { kind: 'migration_name_invalid', value: 'a b', source: 'name', character: 'a space', position: 2, why: 'why' },
      message: '"a b" contains a space at character 2: why',
      hint: 'a migration name is usually letters, digits, "_", "-" and "." (e.g. 02_add_email); fix `name`, or remove it to use the file name',
    },
  ],
  operation_shape: [
    { fact: { kind: 'operation_shape' }, message: 'an operation must be an object with exactly one key, its kind (e.g. add_column)' },
    { fact: { kind: 'operation_shape', keys: [] }, message: 'empty operation: expected one key naming its kind (e.g. add_column)', hint: 'split them into separate items of "operations"' },
    { fact: { kind: 'operation_shape', keys: ['a', 'b'] }, message: 'an operation has exactly one key, its kind; found "a", "b"', hint: 'split them into separate items of "operations"' },
  ],
  operation_unknown: [
    { fact: { kind: 'operation_unknown', name: 'add_colum', suggestion: 'add_column', known: ['add_column'] }, message: 'unknown operation "add_colum"', hint: 'did you mean "add_column"?' },
    { fact: { kind: 'operation_unknown', name: 'zzz', known: ['add_column', 'sql'] }, message: 'unknown operation "zzz"', hint: 'known operations: add_column, sql' },
  ],
  migration_invalid: [{ fact: { kind: 'migration_invalid', message: 'is required (string)' }, message: 'is required (string)' }],
  review_placeholder: [
    {
      fact: { kind: 'review_placeholder', value: 'TODO', line: 4, more: 2, moreLines: [9] },
      message: 'line 4: a placeholder from tandem convert is still here: "TODO" (and 2 more, on line 9)',
      hint: 'replace it with the SQL expression it asks for (the REVIEW comment above the operation says what is needed), then run the command again',
    },
    {
      fact: { kind: 'review_placeholder', value: 'TODO', more: 0, moreLines: [] },
      message: 'a placeholder from tandem convert is still here: "TODO"',
      hint: 'replace it with the SQL expression it asks for (the REVIEW comment above the operation says what is needed), then run the command again',
    },
  ],
  migration_duplicate: [{ fact: { kind: 'migration_duplicate', name: '01', files: ['a.yaml', 'b.json'] }, message: 'two files define migration "01": a.yaml and b.json' }],
  folder_unreadable: [
    { fact: { kind: 'folder_unreadable', dir: 'm', errno: 'ENOENT' }, message: 'no such folder "m"' },
    { fact: { kind: 'folder_unreadable', dir: 'm', errno: 'EACCES' }, message: 'cannot read folder "m" (EACCES)' },
  ],
  history_mismatch: [
    {
      fact: { kind: 'history_mismatch', problem: 'file_missing', name: '01' },
      message: 'migration "01" was applied but no file in the folder defines it',
      hint: 'restore its file (history and folder must agree), or point tandem at the right folder',
    },
    {
      fact: { kind: 'history_mismatch', problem: 'sorts_elsewhere', name: '02', appliedAs: 2, sortsAs: 3, before: '015' },
      message: 'migration "02" was applied as number 2, but its file sorts as number 3; "015" sorts before it and was never applied',
      hint: 'migration files are applied in name order; new migrations must sort after the applied ones',
    },
    {
      fact: { kind: 'history_mismatch', problem: 'other_file', name: '02', appliedAs: 2, found: '03' },
      message: 'migration "02" was applied as number 2, but the folder has "03" there',
      hint: 'migration files are applied in name order; new migrations must sort after the applied ones',
    },
    {
      fact: { kind: 'history_mismatch', problem: 'changed', name: '01' },
      message: 'migration "01" changed since it was applied',
      hint: 'applied migrations must not be edited; write a new migration for further changes',
    },
  ],

  migration_in_flight: [{ fact: { kind: 'migration_in_flight', name: '01', status: 'starting' }, message: 'migration "01" is being started (or its start was interrupted)' }],
  migration_already_started: [{ fact: { kind: 'migration_already_started', name: '01', status: 'active' }, message: 'migration "01" is already active' }],
  migration_changed: [
    { fact: { kind: 'migration_changed', name: '01' }, message: 'migration "01" was started from different content than this file has now', hint: 'restore the file as it was to resume, or run tandem rollback and start again' },
  ],
  migration_applied: [{ fact: { kind: 'migration_applied', name: '01' }, message: 'migration "01" was already applied' }],
  stack_full: [
    { fact: { kind: 'stack_full', active: ['02'], max: 1 }, message: 'migration "02" is active, and --max-active-migrations 1 allows no more', hint: 'complete "02" first, or raise --max-active-migrations' },
    { fact: { kind: 'stack_full', active: ['02', '03'], max: 2 }, message: 'migrations "02", "03" are active, and --max-active-migrations 2 allows no more', hint: 'complete "02" first, or raise --max-active-migrations' },
    {
      fact: { kind: 'stack_full', active: ['02'], max: 3, starting: ['03', '04', '05'] },
      message: 'starting "03", "04", "05" would leave 4 migrations active (with "02"), and --max-active-migrations 3 allows 3',
      hint: 'raise --max-active-migrations, or run migrate without --stack (it completes each migration before the next)',
    },
  ],
  stack_conflict: [
    {
      fact: { kind: 'stack_conflict', name: '02', tables: ['users'] },
      message: 'active migration "02" changes table "users", which this migration touches too (by name or through a foreign key); it was started by a tandem that did not keep its version of its tables, so a migration stacked on it must keep to other tables',
      hint: 'complete "02" first',
    },
  ],
  stack_unfinished: [
    {
      fact: { kind: 'stack_unfinished', name: '02', table: 'items', object: 'price', objectKind: 'column' },
      message:
        'this migration changes column "price" of table "items", which active migration "02" has not finished changing: a stacked migration builds on what an active one changed, but cannot change it again before that one completes',
      hint: 'complete "02" first',
    },
  ],
  stack_refused: [
    { fact: { kind: 'stack_refused', name: '02', reason: 'raw_sql' }, message: 'cannot start while migration "02" is active: this migration runs raw SQL, which may touch any table', hint: 'complete "02" first' },
    { fact: { kind: 'stack_refused', name: '02', reason: 'active_raw_sql' }, message: 'cannot start while migration "02" is active: it runs raw SQL, which may touch any table', hint: 'complete "02" first' },
    { fact: { kind: 'stack_refused', name: '02', reason: 'no_version_schema' }, message: 'cannot start while migration "02" is active: a migration without a version schema cannot be stacked', hint: 'complete "02" first' },
    { fact: { kind: 'stack_refused', name: '02', reason: 'active_no_version_schema' }, message: 'cannot start while migration "02" is active: it has no version schema to build on', hint: 'complete "02" first' },
    {
      fact: { kind: 'stack_refused', name: '02', reason: 'planned_before_stacking' },
      message: 'cannot start while migration "02" is active: it was started by a tandem from before stacked migrations, which did not record the tables it touches',
      hint: 'complete "02" first',
    },
    {
      fact: { kind: 'stack_refused', name: '02', reason: 'complete' },
      message: 'cannot start and complete at once while migration "02" is active: the oldest active migration completes first',
      hint: 'start it without --complete, then complete "02" and it in turn',
    },
    {
      fact: { kind: 'stack_refused', name: '02', reason: 'active_raw_sql', pending: true },
      message: 'cannot be stacked on migration "02", before it in the folder: it runs raw SQL, which may touch any table',
      hint: 'run migrate without --stack (it completes each migration before the next)',
    },
  ],
  nothing_to_resume: [
    { fact: { kind: 'nothing_to_resume' }, message: 'no migration is being started', hint: 'tandem status shows where things stand' },
    {
      fact: { kind: 'nothing_to_resume', current: { name: '01', status: 'completing' } },
      message: 'migration "01" is being completed (or its complete was interrupted): its start is finished',
      hint: 'tandem status shows where things stand',
    },
  ],
  nothing_active: [
    { fact: { kind: 'nothing_active', schema: 'public' }, message: 'no migration is active in schema "public"' },
    { fact: { kind: 'nothing_active', schema: 'public', fresh: true }, message: 'no migration is active in schema "public" (tandem has not been used on this database yet)' },
  ],
  no_versions: [{ fact: { kind: 'no_versions', schema: 'public' }, message: 'no migration has been applied to schema "public" yet' }],
  start_unfinished: [
    { fact: { kind: 'start_unfinished', name: '01', step: 3 }, message: 'migration "01" did not finish starting (stopped at step 3)', hint: 'run tandem start with the same file to resume it, or tandem rollback' },
  ],
  rollback_unfinished: [{ fact: { kind: 'rollback_unfinished', name: '01' }, message: 'migration "01" is being rolled back' }],
  complete_partly_done: [
    { fact: { kind: 'complete_partly_done', name: '01', step: 'drop column old' }, message: 'migration "01" is partly completed: "drop column old" already ran', hint: 'run tandem complete again to finish it' },
  ],
  complete_check_failed: [
    {
      fact: { kind: 'complete_check_failed', name: '01', missing: ['a', 'b'] },
      message: 'complete of "01" ran every step, but 2 objects it created are missing: a; b',
      hint: '"01" stays being completed: recreate what is missing (or fix the cause) and run tandem complete again, which checks again and finishes',
    },
    {
      fact: { kind: 'complete_check_failed', name: '01', missing: ['a'] },
      message: 'complete of "01" ran every step, but an object it created is missing: a',
      hint: '"01" stays being completed: recreate what is missing (or fix the cause) and run tandem complete again, which checks again and finishes',
    },
  ],
  version_in_use: [
    {
      fact: { kind: 'version_in_use', versionSchema: 'public_01', clients: 1, details: ['proxy p: 1'], waited: false },
      message: 'version public_01 still has 1 live client: proxy p: 1',
      hint: 'move its clients to the new version first, or wait with --wait-for-drain DURATION; --force retires it anyway',
    },
    {
      fact: { kind: 'version_in_use', versionSchema: 'public_01', clients: null, details: ['x'], waited: true },
      message: 'version public_01 still has an unknown number of clients (no live proxy reports it): x',
      hint: 'the clients did not leave in time; retire them (deploy the new version) and try again, or --force',
    },
  ],
  version_schema_too_long: [
    { fact: { kind: 'version_schema_too_long', versionSchema: 'v' }, message: 'the version schema name "v" is longer than PostgreSQL\'s 63 bytes', hint: 'shorten the migration name or set version_schema' },
  ],
  version_schema_taken: [
    {
      fact: { kind: 'version_schema_taken', versionSchema: 'app', conflict: { with: 'existing_schema', owner: 'bob' }, fromFile: true },
      message: 'the version schema "app" already exists (owned by bob): start would take it over and complete or rollback would drop it',
      hint: 'choose a version_schema that names no existing schema',
    },
    {
      fact: { kind: 'version_schema_taken', versionSchema: 'public_01', conflict: { with: 'live_version', migration: '01' }, fromFile: false },
      message: 'the version schema "public_01" is the live version of migration "01"',
      hint: 'rename the migration, or set version_schema to a name no schema has',
    },
    { fact: { kind: 'version_schema_taken', versionSchema: 'public', conflict: { with: 'migrated_schema' }, fromFile: true }, message: 'the version schema "public" is the schema being migrated', hint: 'choose a version_schema that names no existing schema' },
    { fact: { kind: 'version_schema_taken', versionSchema: 'tandem', conflict: { with: 'state_schema' }, fromFile: true }, message: 'the version schema "tandem" is tandem\'s state schema', hint: 'choose a version_schema that names no existing schema' },
    {
      fact: { kind: 'version_schema_taken', versionSchema: 'pg_x', conflict: { with: 'system_schema' }, fromFile: true },
      message: 'the version schema "pg_x" is a name PostgreSQL reserves for system schemas',
      hint: 'choose a version_schema that names no existing schema',
    },
  ],
  schema_unknown: [{ fact: { kind: 'schema_unknown', schema: 'app' }, message: 'schema "app" does not exist', hint: 'create it, or pass the right --schema' }],
  busy: [
    { fact: { kind: 'busy', schema: 'public' }, message: 'another tandem process is migrating schema "public" right now', hint: 'wait for it to finish; tandem status shows what it is doing' },
    {
      fact: { kind: 'busy', schema: 'public', holder: { pid: 7, who: 'tandem on h', state: 'active', since: '10:00', query: 'SELECT 1' } },
      message: 'another tandem process is migrating schema "public" right now (server pid 7, tandem on h, active since 10:00: "SELECT 1")',
      hint: 'wait for it to finish (tandem status shows what it is doing); if that process was killed, its server session ends by itself after its current statement (within seconds: tandem sets client_connection_check_interval), or end it now with SELECT pg_terminate_backend(7)',
    },
  ],
  state_changed: [{ fact: { kind: 'state_changed', name: '01' }, message: 'migration "01" was changed by another tandem process meanwhile', hint: 'tandem status shows where it stands now' }],
  phase_failed: [
    { fact: { kind: 'phase_failed', phase: 'complete', name: '01', step: { index: 2, total: 5, description: 'drop x' }, reason: 'boom' }, message: 'complete of "01" failed at step 2 of 5 ("drop x"): boom' },
    { fact: { kind: 'phase_failed', phase: 'start', name: '01', reason: 'boom' }, message: 'boom' },
  ],
  connection_lost: [
    {
      fact: { kind: 'connection_lost', phase: 'start', name: '01', file: '01.yaml', step: { index: 3, total: 4, description: 'backfill big' }, reconnectSeconds: 1, reason: 'gone' },
      message: 'lost the connection to PostgreSQL during start of "01" at step 3 of 4 ("backfill big") and could not reconnect within 1 s: gone',
      hint: 'nothing was rolled back: "01" stays "starting" with every step before this one done (the server undid the unfinished one). Once PostgreSQL is reachable, run tandem start 01.yaml again (or tandem backfill) to go on, or tandem rollback to undo it',
    },
    {
      fact: { kind: 'connection_lost', phase: 'rollback', name: '01', reason: 'gone' },
      message: 'lost the connection to PostgreSQL during rollback of "01": gone',
      hint: '"01" stays "rolling_back" with every step before this one done. Once PostgreSQL is reachable, run tandem rollback again to finish it',
    },
  ],

  usage: [{ fact: { kind: 'usage', message: '--schema must not be empty' }, message: '--schema must not be empty' }],
  connect_failed: [
    { fact: { kind: 'connect_failed', address: 'db:5432', reason: 'refused' }, message: 'could not connect to PostgreSQL at db:5432: refused', hint: 'check --postgres-url, DATABASE_URL or the PG* variables, and that the server is up' },
  ],
  listen_failed: [
    {
      fact: { kind: 'listen_failed', address: '127.0.0.1:6432', flag: '--listen', reason: 'the address is already in use' },
      message: 'the proxy cannot listen on 127.0.0.1:6432 (--listen): the address is already in use',
      hint: 'stop whatever holds 127.0.0.1:6432, or choose another address with --listen; the proxy started nothing',
    },
  ],
  lint_findings: [
    { fact: { kind: 'lint_findings', count: 1 }, message: '1 problem found' },
    { fact: { kind: 'lint_findings', count: 3 }, message: '3 problems found' },
  ],
  lint_unreadable: [{ fact: { kind: 'lint_unreadable', errno: 'EISDIR' }, message: 'cannot read the file (EISDIR)' }],
  sql_syntax: [
    { fact: { kind: 'sql_syntax', reason: 'syntax error at or near "x"', position: { line: 2, column: 5 } }, message: 'line 2, column 5: syntax error at or near "x"' },
    { fact: { kind: 'sql_syntax', reason: 'out of memory' }, message: 'the SQL parser failed: out of memory' },
  ],
  convert_empty: [
    { fact: { kind: 'convert_empty', source: 'file' }, message: 'the file has no statement to convert', hint: 'a migration needs at least one operation' },
    { fact: { kind: 'convert_empty', source: 'folder' }, message: 'the folder holds no SQL migration' },
  ],
  convert_invalid: [
    { fact: { kind: 'convert_invalid', name: '01', reason: 'bad' }, message: 'the converted migration 01 does not validate: bad', hint: 'this is a bug in tandem convert; please report it with the SQL statement' },
  ],
  convert_unreadable: [
    { fact: { kind: 'convert_unreadable', problem: 'file', errno: 'EACCES' }, message: 'cannot read the file (EACCES)' },
    { fact: { kind: 'convert_unreadable', problem: 'folder', errno: 'ENOTDIR' }, message: 'cannot read the folder (ENOTDIR)' },
    { fact: { kind: 'convert_unreadable', problem: 'journal_lists_missing', files: ['0001_a.sql'] }, message: 'meta/_journal.json lists 0001_a.sql, which the folder does not have' },
    { fact: { kind: 'convert_unreadable', problem: 'journal_not_json', reason: 'Unexpected token' }, message: 'not valid JSON: Unexpected token' },
    { fact: { kind: 'convert_unreadable', problem: 'journal_shape' }, message: 'expected Drizzle\'s journal: {"entries": [{"idx": 0, "tag": "0000_name", ...}, ...]}' },
  ],
  more_than_one_pending: [
    {
      fact: { kind: 'more_than_one_pending', names: ['02_a', '03_b'] },
      message: '--expect-one: 2 migrations are waiting to be applied (02_a, 03_b)',
      hint: 'nothing was applied; apply them one deploy at a time, or run without --expect-one',
    },
  ],
  pgroll_state_missing: [
    {
      fact: { kind: 'pgroll_state_missing', pgrollSchema: 'pgroll' },
      message: 'pgroll\'s state schema "pgroll" does not exist (or has no migrations table)',
      hint: 'pass --pgroll-schema when pgroll ran with another --pgroll-schema (PGROLL_STATE_SCHEMA)',
    },
  ],
  pgroll_migration_active: [
    {
      fact: { kind: 'pgroll_migration_active', name: '02_a', schema: 'public' },
      message: 'pgroll\'s migration "02_a" on schema "public" is active (started, not completed)',
      hint: 'nothing was imported; finish it with pgroll first (pgroll complete, or pgroll rollback), then run tandem init --from-pgroll again',
    },
  ],
  pgroll_history_broken: [
    {
      fact: { kind: 'pgroll_history_broken', name: '03_b', parent: '01_a' },
      message: 'pgroll\'s history is not one chain: migration "03_b" has parent "01_a", which is not the one before it',
      hint: 'nothing was imported; pgroll status and pgroll pull show the history pgroll sees',
    },
  ],
  pgroll_import_conflict: [
    {
      fact: { kind: 'pgroll_import_conflict', stateSchema: 'tandem', schema: 'public', applied: 2 },
      message: 'tandem\'s state schema "tandem" already records 2 migrations on schema "public"',
      hint: 'nothing was imported: tandem already manages this schema here; import into an empty state schema (--state-schema)',
    },
  ],
};

describe('the words of each error kind', () => {
  const cases = Object.values(CASES).flat() as Case<ErrorKind>[];
  it.each(cases.map((c) => [c.fact.kind, c] as const))('%s', (_kind, { fact, message, hint }) => {
    const error = new TandemError(fact);
    expect(error.message).toBe(message);
    expect(error.hint).toBe(hint);
  });
});

describe('TandemError', () => {
  it('keeps the kind as its code, and a phase failure as <phase>_failed', () => {
    expect(new TandemError({ kind: 'column_exists', table: 't', column: 'c' }).code).toBe('column_exists');
    expect(new TandemError({ kind: 'phase_failed', phase: 'rollback', name: '01', reason: 'x' }).code).toBe('rollback_failed');
  });

  it('lets a throw site give its own hint over the kind\'s', () => {
    expect(new TandemError({ kind: 'schema_unknown', schema: 'a' }, { hint: 'other' }).hint).toBe('other');
  });

  it('exits 2 for usage and 1 for everything else', () => {
    expect(new UsageError('bad flag').exitCode).toBe(2);
    expect(new UsageError('bad flag').fact).toEqual({ kind: 'usage', message: 'bad flag' });
    expect(new TandemError({ kind: 'migration_empty' }).exitCode).toBe(1);
  });

  it('fills in a missing location and keeps the facts', () => {
    const error = new TandemError({ kind: 'column_unknown', table: 'users', column: 'x', known: ['id'] }, { field: 'column' }).at({ file: 'm.yaml', operation: 2, kind: 'drop_column', field: 'other' });
    expect(error).toMatchObject({ fact: { kind: 'column_unknown', table: 'users', column: 'x' }, file: 'm.yaml', operation: 2, kind: 'drop_column', field: 'column' });
    expect(formatError(error)).toBe('m.yaml: operation 2 (drop_column), field column: column "x" does not exist in table "users"\nhint: columns the new version sees: id');
  });
});
