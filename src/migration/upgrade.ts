/**
 * Migration files written for older pgroll releases, brought to the current format before they are
 * validated. pgroll changed its format a few times and refuses the old shapes (its `update` command
 * rewrites two of them); tandem reads every one of them, so a folder that an older pgroll applied
 * loads unchanged, and `tandem update` rewrites the files once the user wants them current.
 *
 * Each rewrite is of a shape the current format refuses outright, so a file already current is
 * never changed, and its digest stays what it was.
 */

type Document = Record<string, unknown>;
type Body = Record<string, unknown>;

/** One rewrite done: which operation, and which pgroll release stopped reading the old shape. */
export interface Upgrade {
  operation: number;
  kind: string;
  change: string;
}

export interface Upgraded {
  document: unknown;
  upgrades: Upgrade[];
}

/** The document in the current format, and what was rewritten; the input is left as it was. */
export function upgradeMigration(document: unknown): Upgraded {
  if (!isObject(document) || !Array.isArray(document.operations)) return { document, upgrades: [] };
  const upgrades: Upgrade[] = [];
  const operations: unknown[] = [];
  for (const [index, operation] of document.operations.entries()) {
    const rewritten = upgradeOperation(operation);
    if (!rewritten) {
      operations.push(operation);
      continue;
    }
    operations.push(...rewritten.operations);
    upgrades.push({ operation: index, kind: rewritten.kind, change: rewritten.change });
  }
  if (!upgrades.length) return { document, upgrades };
  return { document: { ...(document as Document), operations }, upgrades };
}

function upgradeOperation(operation: unknown): { operations: unknown[]; kind: string; change: string } | undefined {
  if (!isObject(operation)) return undefined;
  const keys = Object.keys(operation);
  if (keys.length !== 1) return undefined;
  const kind = keys[0]!;
  const body = operation[kind];
  if (!isObject(body)) return undefined;
  const rewrite = REWRITES[kind]?.(body);
  return rewrite && { operations: rewrite.bodies.map(([k, b]) => ({ [k]: b })), kind, change: rewrite.change };
}

type Rewrite = (body: Body) => { bodies: [string, Body][]; change: string } | undefined;

const REWRITES: Record<string, Rewrite> = {
  create_index: (body) => {
    const columns = body.columns;
    // Before pgroll 0.10 the columns were a list of names.
    if (Array.isArray(columns) && columns.length && columns.every((c) => typeof c === 'string')) {
      return {
        bodies: [['create_index', { ...body, columns: columns.map((column: string) => ({ column })) }]],
        change: 'columns as a list of names (pgroll before 0.10)',
      };
    }
    // From 0.10 until pgroll made them a list (#1009), they were a map of name to settings: the
    // file's key order is the index's column order, which a JavaScript object keeps.
    if (isObject(columns)) {
      return {
        bodies: [['create_index', { ...body, columns: Object.entries(columns).map(([column, settings]) => ({ column, ...(isObject(settings) ? settings : {}) })) }]],
        change: 'columns as a map of name to settings (pgroll 0.10 to 0.15)',
      };
    }
    return undefined;
  },
  alter_column: (body) => {
    let altered: Body = body;
    const changes: string[] = [];
    // Before pgroll 0.3 `nullable` was `not_null`, with the opposite sense.
    if (typeof body.not_null === 'boolean' && !('nullable' in body)) {
      const { not_null: notNull, ...rest } = altered;
      altered = { ...rest, nullable: !notNull };
      changes.push('not_null instead of nullable (pgroll before 0.3)');
    }
    if (typeof body.name !== 'string') return changes.length ? { bodies: [['alter_column', altered]], change: changes.join('; ') } : undefined;
    const { name: renameTo, ...rest } = altered;
    changes.push('name renames the column (pgroll before 0.9; rename_column since)');
    const rename: Body = { table: body.table, from: body.column, to: renameTo };
    // Every other change of the operation was written against the column's old name, so it runs first.
    const others = Object.keys(rest).some((key) => key !== 'table' && key !== 'column');
    return { bodies: others ? [['alter_column', rest], ['rename_column', rename]] : [['rename_column', rename]], change: changes.join('; ') };
  },
  drop_constraint: (body) => {
    if (!('column' in body)) return undefined;
    const { column: _column, ...rest } = body;
    return { bodies: [['drop_constraint', rest]], change: 'column (pgroll before 0.8 needed it; the constraint names its columns)' };
  },
};

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
