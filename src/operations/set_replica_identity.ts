import type { OperationPlanner } from './types.js';
import { sqlStep } from '../core/steps.js';
import { quoteIdent } from '../core/quote.js';
import { lockTargetOf, replicaIdentitySql } from '../core/ddl.js';
import { TandemError } from '../errors/index.js';

const IDENTITIES = ['default', 'full', 'nothing', 'index'] as const;

/** Takes effect at start (it changes what logical replication sends, not what apps see); rollback restores the old setting. */
export const setReplicaIdentity: OperationPlanner<'set_replica_identity'> = (body, planner) => {
  const { model } = planner;
  const table = model.table(body.table, 'table');
  const type = body.identity.type.toLowerCase();
  if (!(IDENTITIES as readonly string[]).includes(type)) {
    throw new TandemError({ kind: 'replica_identity_type', identity: body.identity.type, known: IDENTITIES }, { field: 'identity.type' });
  }
  const ddlTable = { schema: model.schema, name: table.physical };
  const lockTarget = lockTargetOf(ddlTable);
  let clause = type.toUpperCase();
  if (type === 'index') {
    const name = body.identity.index;
    if (!name) throw new TandemError({ kind: 'replica_identity_index' }, { field: 'identity.index' });
    if (!model.indexNames.has(name)) throw new TandemError({ kind: 'index_unknown', schema: model.schema, index: name }, { field: 'identity.index' });
    clause = `USING INDEX ${quoteIdent(name)}`;
  }
  planner.start('expand', sqlStep(`set replica identity of ${table.name} to ${type}`, replicaIdentitySql(ddlTable, clause), { lockTarget }));
  if (table.info) {
    const previous = table.info.replicaIdentity;
    const previousIndex = table.info.indexes.find((i) => i.replicaIdentity)?.name;
    const restore =
      previous === 'i' && previousIndex ? `USING INDEX ${quoteIdent(previousIndex)}` : { d: 'DEFAULT', n: 'NOTHING', f: 'FULL', i: 'DEFAULT' }[previous];
    planner.rollback(sqlStep(`restore replica identity of ${table.name}`, replicaIdentitySql(ddlTable, restore), { lockTarget }));
  }
};
