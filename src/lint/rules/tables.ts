/** Rules about whole tables: renaming, dropping, rewriting and locking them. */
import { asNode, displayRelation, relationFromNames, relationOf, stringList } from '../../sqlparse/ast.js';
import type { Problem, Rule } from '../types.js';

export const renamingTable: Rule = {
  name: 'renaming-table',
  severity: 'error',
  summary: 'ALTER TABLE ... RENAME TO',
  why: 'The rename is instant, but every running application version that uses the old table name breaks at once.',
  fix: 'Use tandem\'s rename_table: each version schema shows the table under the name its version expects.',
  example: {
    bad: 'ALTER TABLE customers RENAME TO clients;',
    tandem: ['operations:', '  - rename_table:', '      from: customers', '      to: clients'].join('\n'),
  },
  check(context) {
    const rename = asNode(context.statement.node, 'RenameStmt');
    const table = relationOf(rename?.relation);
    if (rename?.renameType !== 'OBJECT_TABLE' || !table || context.state.isNewTable(table)) return [];
    return [{ message: `table ${displayRelation(table)} is renamed to "${rename.newname}"` }];
  },
};

export const droppingTable: Rule = {
  name: 'dropping-table',
  severity: 'error',
  summary: 'DROP TABLE of a table that existed before this migration',
  why: 'Application versions that still use the table fail as soon as it is gone, and the data cannot be brought back by rolling back the code.',
  fix: 'Remove every use of the table from the application and deploy that first; tandem\'s drop_table hides the table from the new version at start and drops it only at complete.',
  example: {
    bad: 'DROP TABLE legacy_sessions;',
    tandem: ['operations:', '  - drop_table:', '      name: legacy_sessions'].join('\n'),
  },
  check(context) {
    const drop = asNode(context.statement.node, 'DropStmt');
    if (drop?.removeType !== 'OBJECT_TABLE') return [];
    return (drop.objects ?? []).flatMap((object): Problem[] => {
      const table = relationFromNames(stringList(asNode(object, 'List')?.items));
      if (!table || context.state.isNewTable(table)) return [];
      return [{ message: `table ${displayRelation(table)} is dropped` }];
    });
  },
};

export const vacuumFull: Rule = {
  name: 'vacuum-full',
  severity: 'error',
  summary: 'VACUUM FULL',
  why: 'VACUUM FULL rewrites the table into a new file under an ACCESS EXCLUSIVE lock: no reads or writes until it finishes.',
  fix: 'Use plain VACUUM (it runs alongside traffic), or an online tool such as pg_repack to reclaim space.',
  example: {
    bad: 'VACUUM FULL orders;',
    good: 'VACUUM (ANALYZE) orders;',
  },
  check(context) {
    const vacuum = asNode(context.statement.node, 'VacuumStmt');
    if (!vacuum?.is_vacuumcmd || !(vacuum.options ?? []).some((o) => asNode(o, 'DefElem')?.defname === 'full')) return [];
    const tables = (vacuum.rels ?? []).flatMap((r) => {
      const table = relationOf(asNode(r, 'VacuumRelation')?.relation);
      return table ? [table] : [];
    });
    if (tables.length > 0 && tables.every((table) => context.state.isNewTable(table))) return [];
    return [{ message: `VACUUM FULL ${tables.length ? tables.map(displayRelation).join(', ') : 'of every table'} locks out all reads and writes` }];
  },
};

export const cluster: Rule = {
  name: 'cluster',
  severity: 'error',
  summary: 'CLUSTER',
  why: 'CLUSTER rewrites the table in index order under an ACCESS EXCLUSIVE lock: no reads or writes until it finishes.',
  fix: 'Use an online tool such as pg_repack with its ordering option, or leave physical order alone.',
  example: {
    bad: 'CLUSTER orders USING orders_created_at_idx;',
    good: '-- pg_repack --table=orders --order-by=created_at (outside the migration)',
  },
  check(context) {
    const statement = asNode(context.statement.node, 'ClusterStmt');
    if (!statement) return [];
    const table = relationOf(statement.relation);
    if (table && context.state.isNewTable(table)) return [];
    return [{ message: `CLUSTER ${table ? displayRelation(table) : 'of every clustered table'} locks out all reads and writes` }];
  },
};

const LOCK_MODES = ['', 'ACCESS SHARE', 'ROW SHARE', 'ROW EXCLUSIVE', 'SHARE UPDATE EXCLUSIVE', 'SHARE', 'SHARE ROW EXCLUSIVE', 'EXCLUSIVE', 'ACCESS EXCLUSIVE'];

export const lockTable: Rule = {
  name: 'lock-table',
  severity: 'error',
  summary: 'LOCK TABLE in a mode that blocks the application',
  why: 'An explicit lock is held until the transaction ends: everything else the migration does in that transaction happens while the application waits.',
  fix: 'Drop the explicit lock and let each statement take the lock it needs, with a lock_timeout so none of them waits long.',
  example: {
    bad: 'LOCK TABLE orders IN ACCESS EXCLUSIVE MODE;',
    good: "SET lock_timeout = '2s';",
  },
  check(context) {
    const lock = asNode(context.statement.node, 'LockStmt');
    if (!lock || (lock.mode ?? 0) < 5) return [];
    const tables = (lock.relations ?? []).flatMap((r) => {
      const table = relationOf(asNode(r, 'RangeVar'));
      return table && !context.state.isNewTable(table) ? [table] : [];
    });
    if (!tables.length) return [];
    return [{ message: `LOCK TABLE ${tables.map(displayRelation).join(', ')} IN ${LOCK_MODES[lock.mode ?? 8] ?? 'ACCESS EXCLUSIVE'} MODE` }];
  },
};

export const TABLE_RULES: Rule[] = [renamingTable, droppingTable, vacuumFull, cluster, lockTable];
