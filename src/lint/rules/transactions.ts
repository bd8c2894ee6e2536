/** Rules about what a migration holds while it runs: lock_timeout, transactions, enum values. */
import { asNode, displayRelation, stringList } from '../../sqlparse/ast.js';
import type { Rule } from '../types.js';

export const missingLockTimeout: Rule = {
  name: 'missing-lock-timeout',
  severity: 'error',
  summary: 'DDL that takes a blocking lock before any SET lock_timeout',
  why:
    'A DDL statement waiting for its lock (behind one long query, say) makes every later query on the table queue ' +
    'behind it: a few seconds of waiting becomes an outage. lock_timeout makes it give up instead.',
  fix: "Start the migration with SET lock_timeout = '2s' (and retry on failure); tandem start sets it for every statement (--lock-timeout).",
  example: {
    bad: 'ALTER TABLE users ADD COLUMN bio text;',
    good: ["SET lock_timeout = '2s';", 'ALTER TABLE users ADD COLUMN bio text;'].join('\n'),
  },
  check(context) {
    if (context.state.lockTimeoutSet) return [];
    const targets = context.state.existingBlockingTargets(context.statement.node);
    if (!targets.length || !context.once('file')) return [];
    return [{ message: `the first statement that locks ${targets.map(displayRelation).join(', ')} runs without a lock_timeout` }];
  },
};

export const backfillInDdlTransaction: Rule = {
  name: 'backfill-in-ddl-transaction',
  severity: 'error',
  summary: 'an UPDATE and blocking DDL in the same transaction',
  why:
    'Locks are held until the transaction ends: the DDL\'s exclusive lock lasts as long as the UPDATE runs (or the ' +
    'UPDATE\'s row locks last through the DDL), so a backfill that takes minutes blocks the table for minutes.',
  fix: 'Commit the DDL first and backfill in small batches in their own transactions; tandem backfills in batches for you (add_column / alter_column with `up`).',
  example: {
    bad: ['BEGIN;', 'ALTER TABLE users ADD COLUMN full_name text;', "UPDATE users SET full_name = first_name || ' ' || last_name;", 'COMMIT;'].join('\n'),
    good: [
      'BEGIN;',
      'ALTER TABLE users ADD COLUMN full_name text;',
      'COMMIT;',
      "UPDATE users SET full_name = first_name || ' ' || last_name WHERE id BETWEEN 1 AND 10000;",
    ].join('\n'),
  },
  check(context) {
    const { state, statement } = context;
    if (!state.inTransaction) return [];
    const isUpdate = asNode(statement.node, 'UpdateStmt') !== undefined;
    const locks = state.existingBlockingTargets(statement.node).length > 0;
    const mixes = (isUpdate && state.transactionHoldsLocks) || (locks && state.transactionUpdated);
    if (!mixes || !context.once(`transaction ${state.transactionNumber}`)) return [];
    return [
      {
        message: isUpdate
          ? 'this UPDATE runs in the same transaction as earlier DDL, which keeps its lock until COMMIT'
          : 'this DDL runs in the same transaction as an earlier UPDATE, and keeps its lock until COMMIT',
      },
    ];
  },
};

export const addEnumValueInTransaction: Rule = {
  name: 'add-enum-value-in-transaction',
  severity: 'error',
  summary: 'ALTER TYPE ... ADD VALUE inside a transaction block before PostgreSQL 12',
  why: 'Before PostgreSQL 12, ALTER TYPE ... ADD VALUE cannot run inside a transaction block: the migration fails.',
  fix: 'Run ADD VALUE on its own, outside BEGIN ... COMMIT (or upgrade: PostgreSQL 12 allows it, though the new value is usable only after COMMIT).',
  example: {
    bad: ['BEGIN;', "ALTER TYPE order_status ADD VALUE 'refunded';", 'COMMIT;'].join('\n'),
    good: "ALTER TYPE order_status ADD VALUE 'refunded';",
    pgVersion: 11,
  },
  check(context) {
    const alter = asNode(context.statement.node, 'AlterEnumStmt');
    if (!alter || alter.oldVal || !context.state.inTransaction || context.options.pgVersion >= 12) return [];
    return [{ message: `ADD VALUE '${alter.newVal}' to ${stringList(alter.typeName).join('.')} inside a transaction block` }];
  },
};

export const TRANSACTION_RULES: Rule[] = [missingLockTimeout, backfillInDdlTransaction, addEnumValueInTransaction];
