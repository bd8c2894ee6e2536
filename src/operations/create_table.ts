import type { OperationPlanner } from './types.js';
import { addConstraint, type ModelColumn, type ModelTable, type SchemaModel } from '../core/model.js';
import { sqlStep } from '../core/steps.js';
import { derivedIdent, qualified, quoteIdent, quoteLiteral } from '../core/quote.js';
import { TandemError } from '../errors/index.js';
import { dropTableSql } from '../core/ddl.js';
import {
  checkSql,
  columnForeignKeySql,
  deferrable,
  generatedSql,
  indexParametersSql,
  isIdentity,
  tableForeignKeySql,
} from '../core/definition-sql.js';

/**
 * A new table: nothing reads it yet, so it is created whole at start (every constraint included)
 * and only the new version's schema shows it. Rollback drops it.
 */
export const createTable: OperationPlanner<'create_table'> = (body, planner) => {
  const { model } = planner;
  // A table of this name that an earlier drop_table hid stays until complete: the new one waits under
  // a temporary name, and so do its index names that the old table's indexes still hold.
  const replacing = !model.findTable(body.name) && model.takenByDroppedTable(body.name);
  if (model.findTable(body.name) || (model.relationNameTaken(body.name) && !replacing)) {
    throw new TandemError({ kind: 'table_exists', schema: model.schema, name: body.name }, { field: 'name' });
  }
  const physicalName = replacing ? freeRelationName(model, derivedIdent('_tandem_new_', body.name)) : body.name;
  const indexName = (name: string) => (replacing && model.relationNameTaken(name) ? freeRelationName(model, derivedIdent('_tandem_ix_', name)) : name);
  const renamedLater: { name: string; physical: string; type: 'primary_key' | 'unique'; columns: string[] }[] = [];
  const seen = new Set<string>();
  body.columns.forEach((c, i) => {
    if (seen.has(c.name)) throw new TandemError({ kind: 'column_duplicate', column: c.name }, { field: `columns[${i}].name` });
    seen.add(c.name);
  });

  const table = qualified(model.schema, physicalName);
  const primaryKey = body.columns.filter((c) => c.pk).map((c) => c.name);
  const definitions = body.columns.map((c, i) => {
    let sql = `${quoteIdent(c.name)} ${c.type}`;
    if (c.unique && replacing) {
      // Named as PostgreSQL would have named it under the table's final name.
      const name = derivedIdent('', `${body.name}_${c.name}_key`);
      const physical = indexName(name);
      sql += ` CONSTRAINT ${quoteIdent(physical)} UNIQUE`;
      renamedLater.push({ name, physical, type: 'unique', columns: [c.name] });
    } else if (c.unique) sql += ' UNIQUE';
    // pgroll's columns are NOT NULL unless they say nullable: true; identity columns always are.
    if (!c.nullable && !isIdentity(c) && !c.pk) sql += ' NOT NULL';
    if (c.default !== undefined) sql += ` DEFAULT ${c.default}`;
    sql += generatedSql(c);
    if (c.check) sql += ` ${checkSql(c.check.name, c.check.constraint, c.check.no_inherit)}`;
    return { sql, references: c.references, index: i };
  });

  const tableConstraints: string[] = [];
  if (primaryKey.length && replacing) {
    const name = derivedIdent('', `${body.name}_pkey`);
    const physical = indexName(name);
    tableConstraints.push(`CONSTRAINT ${quoteIdent(physical)} PRIMARY KEY (${primaryKey.map(quoteIdent).join(', ')})`);
    renamedLater.push({ name, physical, type: 'primary_key', columns: primaryKey });
  } else if (primaryKey.length) tableConstraints.push(`PRIMARY KEY (${primaryKey.map(quoteIdent).join(', ')})`);

  // Foreign keys may point at this very table, so they are resolved once the model knows it.
  const modelTable: ModelTable = {
    name: body.name,
    physical: physicalName,
    created: true,
    columns: body.columns.map(
      (c): ModelColumn => ({
        name: c.name,
        physical: c.name,
        type: c.type,
        nullable: Boolean(c.nullable) && !c.pk && !isIdentity(c),
        default: c.default ?? null,
        identity: c.generated?.identity ? (c.generated.identity.user_specified_values === 'BY DEFAULT' ? 'd' : 'a') : '',
        generated: c.generated?.expression ? 's' : '',
        comment: c.comment ?? null,
        original: null,
      }),
    ),
    constraints: renamedLater.map((c) => ({ ...c, columns: [...c.columns] })),
    primaryKey,
    grants: [],
  };
  model.addTable(modelTable);

  for (const d of definitions) {
    if (d.references) {
      tableConstraints.push(columnForeignKeySql(model, body.columns[d.index]!.name, d.references, `columns[${d.index}].references`));
    }
  }

  (body.constraints ?? []).forEach((constraint, i) => {
    const field = `constraints[${i}]`;
    const columns = constraint.columns ?? [];
    columns.forEach((name, j) => {
      if (!seen.has(name)) {
        throw new TandemError({ kind: 'column_unknown', table: body.name, column: name, known: body.columns.map((c) => c.name), newTable: true }, { field: `${field}.columns[${j}]` });
      }
    });
    // Index-backed constraints share the schema's relation names with the old table's indexes.
    const physical = constraint.type === 'check' || constraint.type === 'foreign_key' ? constraint.name : indexName(constraint.name);
    const named = `CONSTRAINT ${quoteIdent(physical)}`;
    const cols = `(${columns.map(quoteIdent).join(', ')})`;
    const needColumns = () => {
      if (!columns.length) throw new TandemError({ kind: 'constraint_columns', type: constraint.type }, { field: `${field}.columns` });
    };
    switch (constraint.type) {
      case 'primary_key':
        needColumns();
        if (primaryKey.length) {
          throw new TandemError({ kind: 'primary_key_twice' }, { field });
        }
        tableConstraints.push(`${named} PRIMARY KEY ${cols}${indexParametersSql(constraint.index_parameters)}${deferrable(constraint)}`);
        break;
      case 'unique': {
        needColumns();
        const nulls = constraint.nulls_not_distinct ? ' NULLS NOT DISTINCT' : '';
        tableConstraints.push(`${named} UNIQUE${nulls} ${cols}${indexParametersSql(constraint.index_parameters)}${deferrable(constraint)}`);
        break;
      }
      case 'check':
        if (!constraint.check) throw new TandemError({ kind: 'constraint_check' }, { field: `${field}.check` });
        tableConstraints.push(checkSql(constraint.name, constraint.check, constraint.no_inherit));
        break;
      case 'foreign_key':
        needColumns();
        if (!constraint.references) {
          throw new TandemError({ kind: 'constraint_references' }, { field: `${field}.references` });
        }
        tableConstraints.push(tableForeignKeySql(model, constraint.name, columns, constraint.references, constraint, `${field}.references`));
        break;
      case 'exclude': {
        const exclude = constraint.exclude;
        if (!exclude?.elements) throw new TandemError({ kind: 'constraint_exclude' }, { field: `${field}.exclude` });
        const method = exclude.index_method ? ` USING ${exclude.index_method}` : '';
        const where = exclude.predicate ? ` WHERE (${exclude.predicate})` : '';
        tableConstraints.push(`${named} EXCLUDE${method} (${exclude.elements})${indexParametersSql(constraint.index_parameters)}${where}${deferrable(constraint)}`);
        break;
      }
    }
    addConstraint(modelTable, { name: constraint.name, physical, type: constraint.type, columns: [...columns] });
    if (physical !== constraint.name) model.addIndex(physical);
  });
  for (const c of renamedLater) model.addIndex(c.physical);

  const statements = [`CREATE TABLE ${table} (\n  ${[...definitions.map((d) => d.sql), ...tableConstraints].join(',\n  ')}\n)`];
  if (body.comment !== undefined) statements.push(`COMMENT ON TABLE ${table} IS ${quoteLiteral(body.comment)}`);
  for (const c of body.columns) {
    if (c.comment !== undefined) statements.push(`COMMENT ON COLUMN ${table}.${quoteIdent(c.name)} IS ${quoteLiteral(c.comment)}`);
  }
  if (replacing) {
    // Sequences of identity and serial columns are named after the table: give them the names they
    // would have had, once the old table (and its sequences) are gone.
    planner.complete('rename', sqlStep(`rename the sequences of ${body.name}`, renameOwnedSequencesSql(model.schema, physicalName, body.name)));
  }
  planner.start('expand', sqlStep(`create table ${body.name}`, statements));
  planner.rollback(sqlStep(`drop table ${body.name}`, dropTableSql({ schema: model.schema, name: physicalName })));
  planner.expect({ kind: 'table', table: modelTable });
  for (const column of modelTable.columns) planner.expect({ kind: 'column', table: modelTable, column });
  for (const constraint of modelTable.constraints) planner.expect({ kind: 'constraint', table: modelTable, constraint });
};

/** A relation name not in use in the schema, starting from `name`. */
function freeRelationName(model: SchemaModel, name: string): string {
  let candidate = name;
  while (model.relationNameTaken(candidate)) candidate = derivedIdent('_', candidate);
  return candidate;
}

/** Renames each sequence the table owns from `<temporary>_…` to `<final>_…`, where that name is free. */
function renameOwnedSequencesSql(schema: string, temporary: string, final: string): string {
  return `DO $tandem$ DECLARE s record; wanted text; BEGIN
  FOR s IN SELECT c.relname FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
            WHERE d.refobjid = ${quoteLiteral(qualified(schema, temporary))}::regclass AND d.classid = 'pg_class'::regclass
              AND c.relkind = 'S' AND d.deptype IN ('a', 'i') LOOP
    IF starts_with(s.relname, ${quoteLiteral(`${temporary}_`)}) THEN
      wanted := left(${quoteLiteral(final)} || substr(s.relname, length(${quoteLiteral(temporary)}) + 1), 63);
      IF to_regclass(format('%I.%I', ${quoteLiteral(schema)}, wanted)) IS NULL THEN
        EXECUTE format('ALTER SEQUENCE %I.%I RENAME TO %I', ${quoteLiteral(schema)}, s.relname, wanted);
      END IF;
    END IF;
  END LOOP;
END $tandem$`;
}
