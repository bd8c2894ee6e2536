/** Rules about what a migration holds while it runs: lock_timeout, transactions, enum values. */
import type { Node } from 'libpg-query';
import { asNode, displayRelation, relationOf, stringList, walk } from '../../sqlparse/ast.js';
import type { Rule } from '../types.js';

export const missingLockTimeout: Rule = {
  name: 'missing-lock-timeout',
  severity: 'error',
  summary: 'DDL that takes a blocking lock before any SET lock_timeout',
  why:
    'A DDL statement waiting for its lock (behind one long query, say) makes every later query on the table queue ' +
    'behind it: a few seconds of waiting becomes an outage. lock_timeout makes it give up instead. A foreign key locks ' +
    'the table it references too (SHARE ROW EXCLUSIVE), even when the table that gets the key is new.',
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

export const unbatchedDataChange: Rule = {
  name: 'unbatched-data-change',
  severity: 'warning',
  summary: 'an UPDATE or DELETE of an existing table in one statement',
  why:
    'One UPDATE or DELETE locks every row it touches until it commits, so the application\'s writes to those rows wait for ' +
    'all of it; it writes all its WAL at once, so replicas fall behind; a failure near the end undoes everything; and rows ' +
    'the running application writes meanwhile are not covered.',
  fix:
    'Change the rows in batches of a few thousand, each in its own transaction (WHERE id IN (SELECT id ... ORDER BY id LIMIT 5000)), ' +
    'or let tandem do it: add_column and alter_column with `up` backfill in batches and keep rows written later in step.',
  example: {
    bad: "UPDATE users SET email = lower(email);",
    good: 'UPDATE users SET email = lower(email) WHERE id IN (SELECT id FROM users WHERE id > 0 AND email <> lower(email) ORDER BY id LIMIT 5000);',
    tandem: ['operations:', '  - alter_column:', '      table: users', '      column: email', "      up: 'lower(email)'", "      down: 'email'"].join('\n'),
  },
  check(context) {
    const update = asNode(context.statement.node, 'UpdateStmt');
    const remove = asNode(context.statement.node, 'DeleteStmt');
    const relation = relationOf(update?.relation ?? remove?.relation);
    if (!relation || context.state.isNewTable(relation)) return [];
    if (isBatch(update?.whereClause ?? remove?.whereClause)) return [];
    return [{ at: (update?.relation ?? remove?.relation)?.location, message: `${update ? 'UPDATE' : 'DELETE'} of ${displayRelation(relation)} in one statement` }];
  },
};

/** A WHERE that takes a bounded slice of rows: a subquery with LIMIT, or a BETWEEN range of keys. */
function isBatch(where: Node | undefined): boolean {
  let bounded = false;
  walk(where, (kind, body) => {
    if (kind === 'SelectStmt' && body.limitCount !== undefined) bounded = true;
    if (kind === 'A_Expr' && (body.kind === 'AEXPR_BETWEEN' || body.kind === 'AEXPR_BETWEEN_SYM')) bounded = true;
  });
  return bounded;
}

export const TRANSACTION_RULES: Rule[] = [missingLockTimeout, backfillInDdlTransaction, addEnumValueInTransaction, unbatchedDataChange];
