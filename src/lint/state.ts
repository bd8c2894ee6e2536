/**
 * What a SQL file has done so far, as far as the rules care: tables it created (new tables have no
 * readers to block), whether a transaction is open and what it holds, lock_timeout, and NOT NULL
 * checks that have been validated. Updated after each statement; rules only read it.
 */
import type { Node } from 'libpg-query';
import { asNode, relationOf, stringList, type RelationName } from '../sqlparse/ast.js';
import { blockingTargets } from './locks.js';

export class LintState {
  /** Counts transactions so "once per transaction" findings can key on it. */
  transactionNumber = 0;
  inTransaction: boolean;
  /** The open transaction already holds a blocking lock on an existing table. */
  transactionHoldsLocks = false;
  /** The open transaction has run an UPDATE. */
  transactionUpdated = false;
  lockTimeoutSet = false;
  /** Set with SET LOCAL: gone when the transaction ends. */
  private lockTimeoutLocal = false;
  private readonly newTables: RelationName[] = [];
  /** Indexes this file created on its new tables. */
  private readonly newIndexes: RelationName[] = [];
  /** CHECK (column IS NOT NULL) constraints by name, and whether they are validated. */
  private readonly notNullChecks = new Map<string, { table: RelationName; column: string; validated: boolean }>();

  constructor(assumeInTransaction: boolean) {
    this.inTransaction = assumeInTransaction;
  }

  isNewTable(relation: RelationName | undefined): boolean {
    return relation !== undefined && this.newTables.some((table) => sameRelation(table, relation));
  }

  isNewIndex(index: RelationName | undefined): boolean {
    return index !== undefined && this.newIndexes.some((known) => sameRelation(known, index));
  }

  /** The statement's blocking lock targets that existed before this file. */
  existingBlockingTargets(node: Node): RelationName[] {
    // DROP INDEX names the index, not its table: an index this file built on a new table is new too.
    return blockingTargets(node).filter((relation) => !this.isNewTable(relation) && !this.isNewIndex(relation));
  }

  /** A validated CHECK (column IS NOT NULL) on this column: SET NOT NULL can skip its table scan. */
  hasValidatedNotNullCheck(table: RelationName, column: string): boolean {
    return [...this.notNullChecks.values()].some((check) => check.validated && check.column === column && sameRelation(check.table, table));
  }

  /** Records what `node` changed; called by the runner after the rules have seen it. */
  after(node: Node): void {
    const transaction = asNode(node, 'TransactionStmt');
    if (transaction) {
      if (transaction.kind === 'TRANS_STMT_BEGIN' || transaction.kind === 'TRANS_STMT_START') this.beginTransaction();
      else if (transaction.kind === 'TRANS_STMT_COMMIT' || transaction.kind === 'TRANS_STMT_ROLLBACK' || transaction.kind === 'TRANS_STMT_PREPARE') {
        this.inTransaction = false;
        this.transactionHoldsLocks = false;
        this.transactionUpdated = false;
        if (this.lockTimeoutLocal) this.lockTimeoutSet = this.lockTimeoutLocal = false;
      }
      return;
    }
    if (this.inTransaction) {
      if (this.existingBlockingTargets(node).length > 0) this.transactionHoldsLocks = true;
      if (asNode(node, 'UpdateStmt')) this.transactionUpdated = true;
    }
    this.trackSettings(node);
    this.trackTables(node);
    this.trackNotNullChecks(node);
  }

  private beginTransaction(): void {
    this.inTransaction = true;
    this.transactionNumber++;
    this.transactionHoldsLocks = false;
    this.transactionUpdated = false;
  }

  private trackSettings(node: Node): void {
    const set = asNode(node, 'VariableSetStmt');
    if (!set || set.name !== 'lock_timeout') return;
    if (set.kind === 'VAR_SET_VALUE') {
      // SET LOCAL outside a transaction block does nothing (PostgreSQL only warns).
      if (set.is_local && !this.inTransaction) return;
      const value = asNode(set.args?.[0], 'A_Const');
      const text = value?.sval?.sval ?? String(value?.ival?.ival ?? 0);
      // lock_timeout = 0 means "wait forever", the very thing the rule is about.
      this.lockTimeoutSet = !/^\s*0+\s*(ms|s|min)?\s*$/i.test(text);
      this.lockTimeoutLocal = set.is_local === true;
    } else {
      this.lockTimeoutSet = false;
    }
  }

  private trackTables(node: Node): void {
    const create = asNode(node, 'CreateStmt');
    if (create) return this.addNewTable(relationOf(create.relation));
    const createAs = asNode(node, 'CreateTableAsStmt');
    if (createAs) return this.addNewTable(relationOf(createAs.into?.rel));
    const index = asNode(node, 'IndexStmt');
    if (index?.idxname && this.isNewTable(relationOf(index.relation))) {
      const schema = index.relation?.schemaname;
      this.newIndexes.push(schema ? { schema, name: index.idxname } : { name: index.idxname });
    }
    const rename = asNode(node, 'RenameStmt');
    if (rename?.renameType === 'OBJECT_TABLE' && rename.newname && this.isNewTable(relationOf(rename.relation))) {
      const old = relationOf(rename.relation)!;
      this.addNewTable(old.schema ? { schema: old.schema, name: rename.newname } : { name: rename.newname });
    }
  }

  private addNewTable(relation: RelationName | undefined): void {
    if (relation) this.newTables.push(relation);
  }

  private trackNotNullChecks(node: Node): void {
    const alter = asNode(node, 'AlterTableStmt');
    const table = relationOf(alter?.relation);
    if (!alter || !table) return;
    for (const cmdNode of alter.cmds ?? []) {
      const cmd = asNode(cmdNode, 'AlterTableCmd');
      if (cmd?.subtype === 'AT_AddConstraint') {
        const constraint = asNode(cmd.def, 'Constraint');
        const column = notNullCheckColumn(constraint?.raw_expr);
        if (constraint?.contype === 'CONSTR_CHECK' && column) {
          this.notNullChecks.set(constraint.conname ?? `${table.name}.${column}`, { table, column, validated: !constraint.skip_validation });
        }
      } else if (cmd?.subtype === 'AT_ValidateConstraint' && cmd.name) {
        const check = this.notNullChecks.get(cmd.name);
        if (check) check.validated = true;
      }
    }
  }
}

/** The column of a `column IS NOT NULL` expression. */
export function notNullCheckColumn(expression: Node | undefined): string | undefined {
  const test = asNode(expression, 'NullTest');
  if (test?.nulltesttype !== 'IS_NOT_NULL') return undefined;
  const fields = stringList(asNode(test.arg, 'ColumnRef')?.fields);
  return fields.length === 1 ? fields[0] : undefined;
}

export function sameRelation(a: RelationName, b: RelationName): boolean {
  return a.name === b.name && (a.schema === undefined || b.schema === undefined || a.schema === b.schema);
}
