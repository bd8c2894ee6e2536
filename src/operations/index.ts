import type { OperationKind } from '../migration/format.js';
import type { OperationPlanner } from './types.js';
import { addColumn } from './add_column.js';
import { alterColumn } from './alter_column.js';
import { createConstraint, dropConstraint, dropMulticolumnConstraint, renameConstraint } from './constraints.js';
import { createIndex } from './create_index.js';
import { createTable } from './create_table.js';
import { dropColumn } from './drop_column.js';
import { dropIndex } from './drop_index.js';
import { dropTable } from './drop_table.js';
import { renameColumn } from './rename_column.js';
import { renameTable } from './rename_table.js';
import { setReplicaIdentity } from './set_replica_identity.js';
import { rawSql } from './raw_sql.js';

/** Every operation of the format, by the key it has in a migration file. */
export const OPERATIONS: { [K in OperationKind]: OperationPlanner<K> } = {
  create_table: createTable,
  add_column: addColumn,
  alter_column: alterColumn,
  drop_column: dropColumn,
  rename_column: renameColumn,
  rename_table: renameTable,
  drop_table: dropTable,
  create_index: createIndex,
  drop_index: dropIndex,
  create_constraint: createConstraint,
  drop_constraint: dropConstraint,
  drop_multicolumn_constraint: dropMulticolumnConstraint,
  rename_constraint: renameConstraint,
  set_replica_identity: setReplicaIdentity,
  sql: rawSql,
};
