/**
 * One builder per kind of DDL tandem runs on a table, so each is written (and reviewed for its lock)
 * in one place. The `…Sql` builders return a statement, for steps that run several in one
 * transaction; the others return the step itself. Each says which lock it takes on the table
 * (PostgreSQL manual, "Explicit Locking", table-level locks): ACCESS EXCLUSIVE blocks every reader
 * and writer, which is why the planner keeps those statements to catalog changes that take no scan
 * and puts them behind lock_timeout; SHARE UPDATE EXCLUSIVE lets reads and writes go on.
 */
import { qualified, quoteIdent, quoteLiteral } from './quote.js';
import { sqlStep, type SqlStep, type StepOrigin } from './steps.js';

/** A table as DDL names it: schema and physical name. */
export interface DdlTable {
  schema: string;
  name: string;
}

/** The schema-qualified, quoted name; a string is a name already quoted (another table's, as the catalog gives it). */
export function tableSql(table: DdlTable | string): string {
  return typeof table === 'string' ? table : qualified(table.schema, table.name);
}

/** The step's lock target: the table whose lock a step waits for, as error messages name it. */
export function lockTargetOf(table: DdlTable): string {
  return `${table.schema}.${table.name}`;
}

interface StepOptions {
  description?: string;
  origin?: StepOrigin;
}

/** `ADD COLUMN` with the rest of its definition (type, DEFAULT, NOT NULL, …). ACCESS EXCLUSIVE; with no volatile default it changes the catalog only. */
export function addColumnSql(table: DdlTable, column: string, definition: string): string {
  return `ALTER TABLE ${tableSql(table)} ADD COLUMN ${quoteIdent(column)} ${definition}`;
}

/** ACCESS EXCLUSIVE; the data stays until the table is rewritten, so it takes no scan. */
export function dropColumnSql(table: DdlTable, column: string, options: { ifExists?: boolean } = {}): string {
  return `ALTER TABLE ${tableSql(table)} DROP COLUMN ${options.ifExists ? 'IF EXISTS ' : ''}${quoteIdent(column)}`;
}

/** The step that drops a column if it is there (so a resumed plan can run it again). ACCESS EXCLUSIVE. */
export function dropColumn(table: DdlTable, column: string, description: string, options: { destructive?: boolean; origin?: StepOrigin } = {}): SqlStep {
  return sqlStep(description, dropColumnSql(table, column, { ifExists: true }), { lockTarget: lockTargetOf(table), ...options });
}

/** ACCESS EXCLUSIVE; a default applies to rows written later only. */
export function setDefaultSql(table: DdlTable, column: string, expression: string): string {
  return `ALTER TABLE ${tableSql(table)} ALTER COLUMN ${quoteIdent(column)} SET DEFAULT ${expression}`;
}

/** ACCESS EXCLUSIVE. */
export function dropDefaultSql(table: DdlTable, column: string): string {
  return `ALTER TABLE ${tableSql(table)} ALTER COLUMN ${quoteIdent(column)} DROP DEFAULT`;
}

/** ACCESS EXCLUSIVE, and a scan of the whole table under it unless a validated check proves no NULLs (see `notNullCheck`). */
export function setNotNullSql(table: DdlTable, column: string): string {
  return `ALTER TABLE ${tableSql(table)} ALTER COLUMN ${quoteIdent(column)} SET NOT NULL`;
}

/** ACCESS EXCLUSIVE, catalog only. */
export function dropNotNullSql(table: DdlTable, column: string): string {
  return `ALTER TABLE ${tableSql(table)} ALTER COLUMN ${quoteIdent(column)} DROP NOT NULL`;
}

/** ACCESS EXCLUSIVE and a rewrite of the table: only for tables nothing old reads. */
export function alterTypeSql(table: DdlTable, column: string, type: string, using?: string): string {
  return `ALTER TABLE ${tableSql(table)} ALTER COLUMN ${quoteIdent(column)} TYPE ${type}${using ? ` USING (${using})` : ''}`;
}

/**
 * `ADD <constraint clause>` as written (`CONSTRAINT name CHECK …`, `… FOREIGN KEY …`), validated at
 * once: ACCESS EXCLUSIVE for a check (SHARE ROW EXCLUSIVE on both tables for a foreign key) held
 * through a scan, so only for tables nothing old reads.
 */
export function addConstraintSql(table: DdlTable, clause: string): string {
  return `ALTER TABLE ${tableSql(table)} ADD ${clause}`;
}

/**
 * `ADD CONSTRAINT name <body> NOT VALID`: checked for rows written from now on, not for the rows
 * there (no scan). ACCESS EXCLUSIVE for a check, SHARE ROW EXCLUSIVE on both tables for a foreign key,
 * each only for the catalog change.
 */
export function addConstraintNotValidSql(table: DdlTable | string, name: string, body: string): string {
  return `ALTER TABLE ${tableSql(table)} ADD CONSTRAINT ${quoteIdent(name)} ${body} NOT VALID`;
}

/** The step of `addConstraintNotValidSql`. */
export function addConstraintNotValid(table: DdlTable, name: string, body: string, options: StepOptions = {}): SqlStep {
  return sqlStep(options.description ?? `add constraint ${name} NOT VALID`, addConstraintNotValidSql(table, name, body), {
    lockTarget: lockTargetOf(table),
    ...(options.origin ? { origin: options.origin } : {}),
  });
}

/**
 * Scans the rows a NOT VALID constraint has not checked, under SHARE UPDATE EXCLUSIVE: reads and
 * writes go on (a foreign key also takes ROW SHARE on the table it references).
 */
export function validateConstraintSql(table: DdlTable | string, name: string): string {
  return `ALTER TABLE ${tableSql(table)} VALIDATE CONSTRAINT ${quoteIdent(name)}`;
}

/** The step of `validateConstraintSql`. */
export function validateConstraint(table: DdlTable, name: string, options: StepOptions = {}): SqlStep {
  return sqlStep(options.description ?? `validate constraint ${name}`, validateConstraintSql(table, name), {
    lockTarget: lockTargetOf(table),
    ...(options.origin ? { origin: options.origin } : {}),
  });
}

/** ACCESS EXCLUSIVE on the table (and on the table a foreign key references), catalog only. */
export function dropConstraintSql(table: DdlTable | string, name: string, options: { ifExists?: boolean } = {}): string {
  return `ALTER TABLE ${tableSql(table)} DROP CONSTRAINT ${options.ifExists ? 'IF EXISTS ' : ''}${quoteIdent(name)}`;
}

/** The step that drops a constraint if it is there. */
export function dropConstraint(table: DdlTable, physicalName: string, description = `drop constraint ${physicalName}`): SqlStep {
  return sqlStep(description, dropConstraintSql(table, physicalName, { ifExists: true }), { lockTarget: lockTargetOf(table) });
}

/**
 * The prefix of the temporary CHECK (… IS NOT NULL) that stands for NOT NULL on a column while a
 * migration is active (validated, then made SET NOT NULL, at complete).
 */
export const NOT_NULL_CHECK_PREFIX = '_tandem_nn_';

export function isNotNullCheck(constraint: string): boolean {
  return constraint.startsWith(NOT_NULL_CHECK_PREFIX);
}

/**
 * NOT NULL without the scan under ACCESS EXCLUSIVE that SET NOT NULL does: a NOT VALID
 * `IS NOT NULL` check at start, validated (SHARE UPDATE EXCLUSIVE) at complete, after which SET NOT
 * NULL trusts the check and the check has done its job. `add` and `set` are the statements of the
 * first and last parts; the validation is `validateConstraint` of `check`.
 */
export function notNullCheck(table: DdlTable, column: string, check: string, options: { dropIfExists?: boolean } = {}): { add: string; set: string[] } {
  return {
    add: addConstraintNotValidSql(table, check, `CHECK (${quoteIdent(column)} IS NOT NULL)`),
    set: [setNotNullSql(table, column), dropConstraintSql(table, check, { ifExists: options.dropIfExists })],
  };
}

/** Makes a unique index built beforehand the constraint: ACCESS EXCLUSIVE, no scan (the index is the proof). */
export function attachIndexSql(table: DdlTable, name: string, kind: 'unique' | 'primary_key', index: string, deferrable = ''): string {
  return `ALTER TABLE ${tableSql(table)} ADD CONSTRAINT ${quoteIdent(name)} ${kind === 'primary_key' ? 'PRIMARY KEY' : 'UNIQUE'} USING INDEX ${quoteIdent(index)}${deferrable}`;
}

/**
 * A step that builds an index with `CREATE … INDEX CONCURRENTLY IF NOT EXISTS …` (`sql`): SHARE
 * UPDATE EXCLUSIVE, so writes go on while it builds; it cannot run in a transaction, and an
 * interrupted build's INVALID index is removed before a retry.
 */
export function createIndexConcurrently(table: DdlTable, index: string, sql: string, description: string, options: { origin?: StepOrigin } = {}): SqlStep {
  return sqlStep(description, sql, {
    transactional: false,
    cleanup: [dropInvalidIndexSql(table.schema, index)],
    lockTarget: lockTargetOf(table),
    ...(options.origin ? { origin: options.origin } : {}),
  });
}

/** `CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS` over plain columns, for `createIndexConcurrently`. */
export function createUniqueIndexConcurrentlySql(table: DdlTable, index: string, columns: string[], indexOptions = ''): string {
  return `CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS ${quoteIdent(index)} ON ${tableSql(table)} (${columns.map(quoteIdent).join(', ')})${indexOptions}`;
}

/**
 * Drops an index without blocking the table's readers and writers: it waits for the transactions
 * that use the index instead (SHARE UPDATE EXCLUSIVE on the table). Not in a transaction.
 */
export function dropIndexConcurrently(schema: string, index: string, description: string, options: { destructive?: boolean } = {}): SqlStep {
  return sqlStep(description, `DROP INDEX CONCURRENTLY IF EXISTS ${qualified(schema, index)}`, { transactional: false, ...options });
}

/** Removes an index left INVALID by an interrupted CREATE INDEX CONCURRENTLY, so the build can run again. */
export function dropInvalidIndexSql(schema: string, index: string): string {
  return `DO $tandem$ BEGIN
  IF EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = ${quoteLiteral(schema)} AND c.relname = ${quoteLiteral(index)} AND NOT i.indisvalid) THEN
    EXECUTE ${quoteLiteral(`DROP INDEX ${qualified(schema, index)}`)};
  END IF;
END $tandem$`;
}

/**
 * Makes a column an identity column whose sequence starts where the transaction-local setting
 * `setting` says (known only when the statement runs, hence the dynamic SQL). ACCESS EXCLUSIVE;
 * no scan (the values are there already).
 */
export function addIdentityFromSettingSql(table: DdlTable, column: string, mode: 'ALWAYS' | 'BY DEFAULT', setting: string): string {
  const escape = (sql: string) => sql.replace(/'/g, "''");
  return `DO $tandem$ BEGIN EXECUTE format('ALTER TABLE ${escape(tableSql(table))} ALTER COLUMN ${escape(quoteIdent(column))} ADD GENERATED ${mode} AS IDENTITY (START WITH %s)', current_setting(${quoteLiteral(setting)})); END $tandem$`;
}

/** A sequence goes with the column that owns it: ACCESS EXCLUSIVE on the sequence only. `sequence` is quoted already. */
export function sequenceOwnedBySql(sequence: string, table: DdlTable, column: string): string {
  return `ALTER SEQUENCE ${sequence} OWNED BY ${tableSql(table)}.${quoteIdent(column)}`;
}

/** ACCESS EXCLUSIVE, catalog only. */
export function renameColumnSql(table: DdlTable, from: string, to: string): string {
  return `ALTER TABLE ${tableSql(table)} RENAME COLUMN ${quoteIdent(from)} TO ${quoteIdent(to)}`;
}

/** ACCESS EXCLUSIVE, catalog only. */
export function renameConstraint(table: DdlTable, from: string, to: string): SqlStep {
  return sqlStep(`rename constraint ${from} to ${to}`, `ALTER TABLE ${tableSql(table)} RENAME CONSTRAINT ${quoteIdent(from)} TO ${quoteIdent(to)}`, {
    lockTarget: lockTargetOf(table),
  });
}

/** ACCESS EXCLUSIVE, catalog only. */
export function renameTable(table: DdlTable, to: string): SqlStep {
  return sqlStep(`rename table ${table.name} to ${to}`, `ALTER TABLE ${tableSql(table)} RENAME TO ${quoteIdent(to)}`, { lockTarget: lockTargetOf(table) });
}

/** SHARE UPDATE EXCLUSIVE on the index's table (PostgreSQL 12+), catalog only. */
export function renameIndex(schema: string, from: string, to: string): SqlStep {
  return sqlStep(`rename index ${from} to ${to}`, `ALTER INDEX ${qualified(schema, from)} RENAME TO ${quoteIdent(to)}`);
}

/** SHARE UPDATE EXCLUSIVE. `comment` null removes it. */
export function commentOnColumnSql(table: DdlTable, column: string, comment: string | null): string {
  return `COMMENT ON COLUMN ${tableSql(table)}.${quoteIdent(column)} IS ${comment === null ? 'NULL' : quoteLiteral(comment)}`;
}

/** ACCESS EXCLUSIVE, catalog only. `clause`: DEFAULT, FULL, NOTHING or USING INDEX "name". */
export function replicaIdentitySql(table: DdlTable, clause: string): string {
  return `ALTER TABLE ${tableSql(table)} REPLICA IDENTITY ${clause}`;
}

/** ACCESS EXCLUSIVE on the table (and on the tables whose foreign keys point at it). */
export function dropTableSql(table: DdlTable): string {
  return `DROP TABLE IF EXISTS ${tableSql(table)}`;
}
