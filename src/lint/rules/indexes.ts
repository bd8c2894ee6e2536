/** Rules about building, dropping and rebuilding indexes. */
import { asNode, displayRelation, relationFromNames, relationOf, stringList } from '../../sqlparse/ast.js';
import type { Problem, Rule } from '../types.js';
import { alterTable } from './support.js';

export const createIndexWithoutConcurrently: Rule = {
  name: 'create-index-without-concurrently',
  severity: 'error',
  summary: 'CREATE INDEX on an existing table without CONCURRENTLY',
  why: 'A plain CREATE INDEX holds a SHARE lock for the whole build: every INSERT, UPDATE and DELETE on the table waits until it is done.',
  fix: 'Use CREATE INDEX CONCURRENTLY, outside a transaction block (tandem\'s create_index always builds concurrently).',
  example: {
    bad: 'CREATE INDEX orders_created_at_idx ON orders (created_at);',
    good: 'CREATE INDEX CONCURRENTLY orders_created_at_idx ON orders (created_at);',
  },
  check(context) {
    const index = asNode(context.statement.node, 'IndexStmt');
    const table = relationOf(index?.relation);
    if (!index || index.concurrent || !table || context.state.isNewTable(table)) return [];
    const name = index.idxname ? ` "${index.idxname}"` : '';
    return [{ message: `index${name} on ${displayRelation(table)} is built without CONCURRENTLY` }];
  },
};

export const dropIndexWithoutConcurrently: Rule = {
  name: 'drop-index-without-concurrently',
  severity: 'error',
  summary: 'DROP INDEX without CONCURRENTLY',
  why: 'DROP INDEX takes an ACCESS EXCLUSIVE lock on the index\'s table; while it waits for running queries, every new query on the table queues behind it.',
  fix: 'Use DROP INDEX CONCURRENTLY, outside a transaction block (tandem\'s drop_index does).',
  example: {
    bad: 'DROP INDEX orders_created_at_idx;',
    good: 'DROP INDEX CONCURRENTLY orders_created_at_idx;',
  },
  check(context) {
    const drop = asNode(context.statement.node, 'DropStmt');
    if (drop?.removeType !== 'OBJECT_INDEX' || drop.concurrent) return [];
    return (drop.objects ?? []).flatMap((object): Problem[] => {
      const index = relationFromNames(stringList(asNode(object, 'List')?.items));
      if (!index || context.state.isNewIndex(index)) return [];
      return [{ message: `index ${displayRelation(index)} is dropped without CONCURRENTLY` }];
    });
  },
};

export const reindexWithoutConcurrently: Rule = {
  name: 'reindex-without-concurrently',
  severity: 'error',
  summary: 'REINDEX without CONCURRENTLY',
  why: 'A plain REINDEX blocks writes to the table, and reads that would use the index, until the rebuild finishes.',
  fix: 'Use REINDEX ... CONCURRENTLY (PostgreSQL 12 and later), outside a transaction block.',
  example: {
    bad: 'REINDEX INDEX orders_created_at_idx;',
    good: 'REINDEX INDEX CONCURRENTLY orders_created_at_idx;',
  },
  check(context) {
    const reindex = asNode(context.statement.node, 'ReindexStmt');
    if (!reindex || (reindex.params ?? []).some((p) => asNode(p, 'DefElem')?.defname === 'concurrently')) return [];
    const target = relationOf(reindex.relation);
    if (target && (context.state.isNewTable(target) || context.state.isNewIndex(target))) return [];
    const problem: Problem = { message: `REINDEX${target ? ` of ${displayRelation(target)}` : ''} runs without CONCURRENTLY` };
    if (context.options.pgVersion < 12) {
      problem.fix = 'Before PostgreSQL 12 there is no REINDEX CONCURRENTLY: build a replacement with CREATE INDEX CONCURRENTLY, then DROP INDEX CONCURRENTLY the old one.';
    }
    return [problem];
  },
};

export const concurrentlyInTransaction: Rule = {
  name: 'concurrently-in-transaction',
  severity: 'error',
  summary: 'a CONCURRENTLY operation inside a transaction block',
  why: 'PostgreSQL refuses CREATE INDEX CONCURRENTLY, DROP INDEX CONCURRENTLY, REINDEX CONCURRENTLY and DETACH PARTITION CONCURRENTLY inside a transaction block: the migration fails.',
  fix: 'Run the statement outside BEGIN ... COMMIT (and tell your migration runner not to wrap this file in a transaction).',
  example: {
    bad: ['BEGIN;', 'CREATE INDEX CONCURRENTLY orders_created_at_idx ON orders (created_at);', 'COMMIT;'].join('\n'),
    good: 'CREATE INDEX CONCURRENTLY orders_created_at_idx ON orders (created_at);',
  },
  check(context) {
    if (!context.state.inTransaction) return [];
    const node = context.statement.node;
    let what: string | undefined;
    if (asNode(node, 'IndexStmt')?.concurrent) what = 'CREATE INDEX CONCURRENTLY';
    else if (asNode(node, 'DropStmt')?.concurrent) what = 'DROP ... CONCURRENTLY';
    else if ((asNode(node, 'ReindexStmt')?.params ?? []).some((p) => asNode(p, 'DefElem')?.defname === 'concurrently')) what = 'REINDEX CONCURRENTLY';
    else if (alterTable(context)?.commands.some(({ cmd }) => cmd.subtype === 'AT_DetachPartition' && asNode(cmd.def, 'PartitionCmd')?.concurrent)) {
      what = 'DETACH PARTITION CONCURRENTLY';
    }
    return what ? [{ message: `${what} cannot run inside a transaction block` }] : [];
  },
};

export const INDEX_RULES: Rule[] = [createIndexWithoutConcurrently, dropIndexWithoutConcurrently, reindexWithoutConcurrently, concurrentlyInTransaction];
