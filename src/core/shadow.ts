/**
 * Shadow columns: how a column changes while both versions use it. The new version gets a new
 * physical column (the shadow) with the new definition; the sync trigger keeps old and shadow equal
 * in both directions; the backfill fills the shadow for existing rows. Everything attached to the
 * old column follows the shadow: CHECK and FOREIGN KEY constraints are recreated NOT VALID and
 * validated at complete, unique and primary-key indexes and plain indexes are built concurrently,
 * identity and defaults are carried over, and foreign keys of other tables that point at the column
 * are moved onto it. At complete one short transaction per table swaps the shadows into place (all
 * catalog changes: no scan happens under its ACCESS EXCLUSIVE lock); renames give back the names.
 */
import type { InboundForeignKey, TableInfo } from './catalog-types.js';
import { inboundForeignKeysLeft, type ModelColumn, type ModelTable, type SchemaModel } from './model.js';
import { sqlStep, type PendingIndex, type SqlStep, type StepOrigin } from './steps.js';
import {
  addColumnSql,
  addIdentityFromSettingSql,
  addConstraintNotValid,
  addConstraintNotValidSql,
  attachIndexSql,
  commentOnColumnSql,
  createIndexConcurrently,
  createUniqueIndexConcurrentlySql,
  dropColumn,
  dropColumnSql,
  dropConstraintSql,
  dropDefaultSql,
  isNotNullCheck,
  NOT_NULL_CHECK_PREFIX,
  lockTargetOf,
  notNullCheck,
  sequenceOwnedBySql,
  setDefaultSql,
  tableSql,
  validateConstraint,
  validateConstraintSql,
  type DdlTable,
} from './ddl.js';
import { renameColumnRefs } from './rewrite.js';
import { derivedIdent, quoteIdent, quoteLiteral } from './quote.js';
import type { SyncExpression, SyncRule } from './triggers.js';

export interface ShadowColumn {
  /**
   * The model column; its `physical` is the shadow while the migration is active, and its type,
   * nullability, default and comment are what the shadow is built with.
   */
  column: ModelColumn;
  original: string;
  shadow: string;
  up: SyncExpression[];
  down: SyncExpression[];
  origin: StepOrigin;
}

/** A constraint a migration adds on shadow columns, its SQL already in physical names. */
export interface NewConstraint {
  name: string;
  kind: 'check' | 'foreign_key' | 'unique' | 'primary_key';
  /** For checks and foreign keys: the constraint body (`CHECK (…)`, `FOREIGN KEY … REFERENCES …`). */
  body?: string;
  /** For unique and primary key: physical columns and index options. */
  columns?: string[];
  indexOptions?: string;
  deferrable?: string;
  origin: StepOrigin;
}

/** The steps a table's shadows need, by where they go in the plan. */
export interface ShadowSteps {
  expand: SqlStep[];
  rules: SyncRule[];
  constrain: SqlStep[];
  touchColumn: string;
  indexes: SqlStep[];
  validate: SqlStep[];
  swap: SqlStep;
  afterSwap: SqlStep[];
  indexRenames: { from: string; to: string }[];
  /** Indexes built under temporary names that the swap makes constraints (with indexRenames, a stacked migration's pendingIndexes). */
  attaches: Required<PendingIndex>[];
  /**
   * Constraints of the table recreated on the shadows under a temporary name: the model's constraint
   * of physical name `from` must be moved to `to` (see `moveConstraint`), for complete to rename it back.
   */
  constraintMoves: { from: string; to: string }[];
  rollback: SqlStep[];
}

export class ShadowTable {
  readonly columns: ShadowColumn[] = [];
  /** Constraints (physical names) that must not follow the shadows: drop_constraint dropped them. */
  readonly dropped = new Set<string>();
  readonly added: NewConstraint[] = [];

  constructor(
    readonly schema: string,
    readonly table: ModelTable,
    private readonly model: SchemaModel,
  ) {}

  find(column: ModelColumn): ShadowColumn | undefined {
    return this.columns.find((s) => s.column === column);
  }

  private get info(): TableInfo {
    return this.table.info!;
  }

  /** Old physical name → shadow. */
  mapping(): Map<string, string> {
    return new Map(this.columns.map((s) => [s.original, s.shadow]));
  }

  /** What the shadows need, computed from the model without changing it. */
  steps(temporaryName: (kind: string, name: string) => string): ShadowSteps {
    const ddlTable: DdlTable = { schema: this.schema, name: this.table.physical };
    const table = tableSql(ddlTable);
    const lockTarget = lockTargetOf(ddlTable);
    const mapping = this.mapping();
    const involves = (columns: (string | null)[]) => columns.some((c) => c !== null && mapping.has(c));
    const origin = this.columns[0]!.origin;
    const step = (description: string, statements: string[], options: Parameters<typeof sqlStep>[2] = {}) =>
      sqlStep(description, statements, { lockTarget, origin, ...options });
    const columnsOf = this.info.columns;

    const result: Omit<ShadowSteps, 'swap'> = {
      expand: [],
      rules: [],
      constrain: [],
      touchColumn: this.columns[0]!.shadow,
      indexes: [],
      validate: [],
      afterSwap: [],
      indexRenames: [],
      attaches: [],
      constraintMoves: [],
      rollback: [],
    };
    const notValid: { name: string; table: string }[] = [];
    // The swap transaction: what must happen before the old columns are dropped, then what attaches
    // to the shadows once the old columns (and the constraints on them) are gone.
    const beforeDrop: string[] = [];
    const afterSwapValidate: { name: string; table: string }[] = [];

    for (const s of this.columns) {
      const old = columnsOf.find((c) => c.name === s.original)!;
      const pending = s.column;
      // Added bare, so the table is never rewritten; defaults apply to new rows, the backfill fills old ones.
      const statements = [addColumnSql(ddlTable, s.shadow, pending.type)];
      const identity = old.identity !== '' && old.sequence;
      const defaultSql = identity ? `nextval(${quoteLiteral(old.sequence!)}::regclass)` : pending.default;
      if (defaultSql) statements.push(setDefaultSql(ddlTable, s.shadow, defaultSql));
      if (pending.comment !== null) statements.push(commentOnColumnSql(ddlTable, s.shadow, pending.comment));
      result.expand.push(step(`add shadow column ${this.table.physical}.${s.shadow} for ${s.original}`, statements, { origin: s.origin }));
      result.rollback.push(dropColumn(ddlTable, s.shadow, `drop shadow column ${this.table.physical}.${s.shadow}`, { origin: s.origin }));

      result.rules.push({
        description: `${this.table.name}.${s.column.name}: ${s.original} <-> ${s.shadow}`,
        oldColumn: s.original,
        newColumn: s.shadow,
        up: s.up.length ? s.up : [copyExpression(s.original, old.type, pending.type, s.origin, 'up')],
        down: s.down.length ? s.down : [copyExpression(s.shadow, pending.type, old.type, s.origin, 'down')],
        origin: { operation: s.origin.operation, kind: s.origin.kind },
      });

      if (!pending.nullable) {
        const check = derivedIdent(NOT_NULL_CHECK_PREFIX, `${this.table.physical}_${s.original}`);
        const notNull = notNullCheck(ddlTable, s.shadow, check);
        result.constrain.push(step(`add NOT NULL check on ${s.shadow} NOT VALID`, [notNull.add]));
        notValid.push({ name: check, table });
        beforeDrop.push(...notNull.set);
      }
      if (old.identity === '' && old.sequence) {
        // A serial's sequence belongs to the old column and would go with it (or, when the shadow's
        // default still uses it, stop the drop); it belongs to the column that replaces it, as
        // ALTER COLUMN … TYPE would have left it.
        beforeDrop.push(sequenceOwnedBySql(old.sequence, ddlTable, s.shadow));
      }
      if (identity) {
        const setting = `tandem.identity_${s.shadow.replace(/[^a-z0-9_]/gi, '_')}`.slice(0, 60);
        // Remember where the sequence is before the old column (and its identity sequence) goes.
        beforeDrop.push(
          `SELECT set_config(${quoteLiteral(setting)}, (SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM ${old.sequence})::text, true)`,
          // The shadow's default uses that sequence; it must let go before the old column takes it along.
          dropDefaultSql(ddlTable, s.shadow),
        );
      }
    }

    // Constraints on the old columns follow the shadows (except those the migration drops).
    for (const constraint of this.info.constraints) {
      if (!involves(constraint.columns) || this.dropped.has(constraint.name)) continue;
      // An active migration's NOT NULL in waiting on the column (stacked migrations): the shadow
      // carries the column's nullability itself, above.
      if (isNotNullCheck(constraint.name)) continue;
      if (constraint.type === 'check' || constraint.type === 'foreign_key') {
        const temp = temporaryName('c', constraint.name);
        const definition = constraint.definition.replace(/\s+NOT VALID$/, '');
        const body =
          constraint.type === 'foreign_key' ? rewriteHead(definition, 'REFERENCES', mapping) : renameColumnRefs(definition, mapping);
        result.constrain.push(step(`recreate constraint ${constraint.name} on the shadow columns NOT VALID`, [addConstraintNotValidSql(ddlTable, temp, body)]));
        notValid.push({ name: temp, table });
        result.constraintMoves.push({ from: constraint.name, to: temp });
      } else if (constraint.type === 'unique' || constraint.type === 'primary_key') {
        const index = this.info.indexes.find((i) => i.name === constraint.indexName);
        const temp = temporaryName('ix', constraint.name);
        result.indexes.push(this.concurrentIndex(temp, index!.definition, mapping, constraint.type === 'primary_key'));
        const deferrable = /DEFERRABLE( INITIALLY DEFERRED)?$/.exec(constraint.definition)?.[0] ?? '';
        result.attaches.push({ index: temp, name: constraint.name, constraint: { kind: constraint.type, deferrable: deferrable ? ` ${deferrable}` : '' } });
      }
    }
    for (const index of this.info.indexes) {
      if (index.constraint || !involvesIndex(index.definition, index.columns, mapping)) continue;
      const temp = temporaryName('ix', index.name);
      // An active migration's index in waiting on the column this one shadows again (stacked
      // migrations): rebuilt on the new shadow, it becomes at this one's complete what it would have
      // become at that one's.
      const pending = this.model.pendingIndexes.get(index.name);
      const becomes = pending?.constraint;
      if (becomes) {
        // drop_constraint dropped it.
        if (!this.table.constraints.some((c) => c.name === pending.name)) continue;
        result.indexes.push(this.concurrentIndex(temp, index.definition, mapping, becomes.kind === 'primary_key'));
        result.attaches.push({ index: temp, name: pending.name, constraint: becomes });
        continue;
      }
      const name = pending?.name ?? index.name;
      // drop_index dropped it: it goes with the old column and is not rebuilt.
      if (!this.model.indexNames.has(name)) continue;
      result.indexes.push(this.concurrentIndex(temp, index.definition, mapping, false));
      result.indexRenames.push({ from: temp, to: name });
    }

    // Constraints the migration adds.
    for (const constraint of this.added) {
      if (constraint.kind === 'check' || constraint.kind === 'foreign_key') {
        result.constrain.push(addConstraintNotValid(ddlTable, constraint.name, constraint.body!, { origin: constraint.origin }));
        notValid.push({ name: constraint.name, table });
      } else {
        const temp = temporaryName('ix', constraint.name);
        const sql = createUniqueIndexConcurrentlySql(ddlTable, temp, constraint.columns!, constraint.indexOptions ?? '');
        result.indexes.push(createIndexConcurrently(ddlTable, temp, sql, `build unique index ${temp} concurrently`, { origin: constraint.origin }));
        result.attaches.push({ index: temp, name: constraint.name, constraint: { kind: constraint.kind, deferrable: constraint.deferrable ?? '' } });
      }
    }

    for (const { name } of notValid) {
      result.validate.push(validateConstraint(ddlTable, name, { origin }));
    }

    // Foreign keys of other tables that point at an old column move to its shadow.
    // Those the migration drops (or whose tables it drops) go with their own tables' changes.
    const inbound = inboundForeignKeysLeft(this.model, this.table).filter((fk) => involves(fk.referencedColumns));
    const dropInbound = inbound.map((fk) => dropConstraintSql(fk.table, fk.name));
    const addInbound = inbound.map((fk) => addConstraintNotValidSql(fk.table, fk.name, retargetForeignKey(fk, mapping)));
    afterSwapValidate.push(...inbound.map((fk) => ({ name: fk.name, table: fk.table })));

    const identities = this.columns.filter((s) => {
      const old = columnsOf.find((c) => c.name === s.original)!;
      return old.identity !== '' && old.sequence;
    });
    const identityStatements = identities.flatMap((s) => {
      const old = columnsOf.find((c) => c.name === s.original)!;
      const setting = `tandem.identity_${s.shadow.replace(/[^a-z0-9_]/gi, '_')}`.slice(0, 60);
      const mode = old.identity === 'a' ? 'ALWAYS' : 'BY DEFAULT';
      return [addIdentityFromSettingSql(ddlTable, s.shadow, mode, setting)];
    });

    const swapStep = step(
      `swap the shadow columns of ${this.table.physical} into place`,
      [
        ...beforeDrop,
        ...dropInbound,
        ...this.columns.map((s) => dropColumnSql(ddlTable, s.original)),
        ...result.attaches.map((a) => attachIndexSql(ddlTable, a.name, a.constraint.kind, a.index, a.constraint.deferrable)),
        ...identityStatements,
        ...addInbound,
      ],
      { destructive: true },
    );
    for (const { name, table: on } of afterSwapValidate) {
      result.afterSwap.push(step(`validate moved foreign key ${name}`, [validateConstraintSql(on, name)]));
    }
    return { ...result, swap: swapStep };
  }

  /** `CREATE INDEX` of an existing index, rewritten onto the shadow columns, concurrently, under a temporary name. */
  private concurrentIndex(name: string, definition: string, mapping: Map<string, string>, primary: boolean): SqlStep {
    const on = definition.indexOf(' ON ');
    const using = definition.indexOf(' USING ', on);
    const head = definition.slice(0, on).replace(/^CREATE (UNIQUE )?INDEX \S+/, (_m, unique: string | undefined) => `CREATE ${unique || primary ? 'UNIQUE ' : ''}INDEX CONCURRENTLY IF NOT EXISTS ${quoteIdent(name)}`);
    const sql = `${head}${definition.slice(on, using)}${renameColumnRefs(definition.slice(using), mapping)}`;
    return createIndexConcurrently({ schema: this.schema, name: this.table.physical }, name, sql, `build index ${name} concurrently on the shadow columns`, {
      origin: this.columns[0]!.origin,
    });
  }
}

function involvesIndex(definition: string, columns: (string | null)[], mapping: Map<string, string>): boolean {
  if (columns.some((c) => c !== null && mapping.has(c))) return true;
  const using = definition.indexOf(' USING ');
  const tail = definition.slice(using);
  return renameColumnRefs(tail, mapping) !== tail;
}

/** Renames column references in the part of a definition before `keyword` only. */
function rewriteHead(definition: string, keyword: string, mapping: Map<string, string>): string {
  const at = definition.indexOf(` ${keyword} `);
  if (at < 0) return renameColumnRefs(definition, mapping);
  return renameColumnRefs(definition.slice(0, at), mapping) + definition.slice(at);
}

/** An inbound foreign key's definition with the referenced columns moved to their shadows. */
function retargetForeignKey(fk: InboundForeignKey, mapping: Map<string, string>): string {
  const definition = fk.definition.replace(/\s+NOT VALID$/, '');
  const match = /^(FOREIGN KEY \(.*?\) REFERENCES .*?\()(.*?)(\).*)$/s.exec(definition);
  if (!match) return definition;
  const referenced = fk.referencedColumns.map((c) => quoteIdent(mapping.get(c) ?? c)).join(', ');
  return `${match[1]}${referenced}${match[3]}`;
}

/** The default `up`/`down`: the value itself, converted by assignment. */
export function copyExpression(column: string, fromType: string, toType: string, origin: StepOrigin, field: string): SyncExpression {
  return {
    sql: quoteIdent(column),
    names: { [column]: { column, type: fromType } },
    resultType: toType,
    origin: { operation: origin.operation, kind: origin.kind, field },
  };
}

export function shadowName(column: string): string {
  return derivedIdent('_tandem_new_', column);
}
