import type { ColumnInfo, ConstraintInfo, IndexInfo, SchemaInfo, TableInfo } from '../../src/core/catalog-types.js';
import type { Inspector } from '../../src/core/planner.js';

/** A table of a catalog snapshot literal: what a test leaves out is what an empty table would have. */
export interface TableSnapshot {
  name: string;
  oid?: number;
  columns: (Partial<ColumnInfo> & Pick<ColumnInfo, 'name' | 'type'>)[];
  constraints?: ConstraintInfo[];
  indexes?: IndexInfo[];
  inboundForeignKeys?: TableInfo['inboundForeignKeys'];
  replicaIdentity?: TableInfo['replicaIdentity'];
}

/** The `SchemaInfo` readSchema would return for these tables, so planning needs no server. */
export function catalogSnapshot(tables: TableSnapshot[], options: { schema?: string; serverVersionNum?: number } = {}): SchemaInfo {
  const infos = tables.map(
    (t, i): TableInfo => ({
      oid: t.oid ?? 16384 + i,
      name: t.name,
      columns: t.columns.map((c) => ({ nullable: true, default: null, identity: '', generated: '', comment: null, sequence: null, ...c })),
      constraints: t.constraints ?? [],
      indexes: t.indexes ?? [],
      comment: null,
      replicaIdentity: t.replicaIdentity ?? 'd',
      estimatedRows: -1,
      partitioned: false,
      grants: [],
      inboundForeignKeys: t.inboundForeignKeys ?? [],
    }),
  );
  return {
    name: options.schema ?? 'public',
    tables: new Map(infos.map((t) => [t.name, t])),
    indexNames: new Set(infos.flatMap((t) => t.indexes.map((i) => i.name))),
    serverVersionNum: options.serverVersionNum ?? 170000,
    usageGrantees: [],
  };
}

/**
 * The server's answers from a table: an expression listed in `volatile` or `stable` has that
 * volatility, any other is immutable (as a constant or an operator over columns is).
 */
export function memoryInspector(answers: { volatile?: string[]; stable?: string[] } = {}): Inspector {
  return {
    async volatility(expression) {
      if (answers.volatile?.includes(expression)) return 'volatile';
      if (answers.stable?.includes(expression)) return 'stable';
      return 'immutable';
    },
  };
}
