/** CREATE INDEX as create_index. tandem always builds indexes CONCURRENTLY, so the keyword may or may not be there. */
import type { IndexStmt } from 'libpg-query';
import { asNode, identifierSql, stringList } from '../sqlparse/ast.js';
import { expressionFrom, findToken, insideParentheses, tokenIndexAt } from '../sqlparse/slice.js';
import type { IndexField, OperationBody } from '../migration/format.js';
import { operation, tableName, Unconvertible, type ConvertContext, type ConvertedOperation, type Note } from './context.js';
import { defaultName } from './names.js';

const METHODS = ['btree', 'hash', 'gist', 'spgist', 'gin', 'brin'] as const;

export function convertCreateIndex(context: ConvertContext, index: IndexStmt): ConvertedOperation {
  const target = tableName(context, index.relation);
  if ('problem' in target) throw new Unconvertible(target.problem);
  if (index.relation?.inh === false) throw new Unconvertible('CREATE INDEX ON ONLY (a partitioned parent) has no create_index form');
  if (index.indexIncludingParams?.length) throw new Unconvertible('create_index has no INCLUDE columns');
  if (index.tableSpace) throw new Unconvertible('create_index has no TABLESPACE');
  if (index.nulls_not_distinct) throw new Unconvertible('create_index has no NULLS NOT DISTINCT');
  const method = (index.accessMethod ?? 'btree') as (typeof METHODS)[number];
  if (!METHODS.includes(method)) throw new Unconvertible(`create_index does not know the index method "${index.accessMethod}"`);
  const columns = (index.indexParams ?? []).map((param) => {
    const element = asNode(param, 'IndexElem');
    if (!element?.name) throw new Unconvertible('expression indexes have no create_index form (it takes column names only)');
    const field: IndexField = { column: element.name };
    const collation = stringList(element.collation);
    // tandem's create_index quotes `collate` as one identifier, so it takes the bare name.
    if (collation.length > 1) throw new Unconvertible('create_index takes a collation name without a schema');
    if (collation.length) field.collate = collation[0]!;
    const opclass = stringList(element.opclass);
    if (opclass.length) {
      field.opclass = { name: opclass.map(identifierSql).join('.') };
      const params = (element.opclassopts ?? []).flatMap((option) => {
        const definition = asNode(option, 'DefElem');
        return definition ? [`${definition.defname}=${optionValue(definition.arg)}`] : [];
      });
      if (params.length) field.opclass.params = params;
    }
    if (element.ordering === 'SORTBY_ASC') field.sort = 'ASC';
    if (element.ordering === 'SORTBY_DESC') field.sort = 'DESC';
    if (element.nulls_ordering === 'SORTBY_NULLS_FIRST') field.nulls = 'FIRST';
    if (element.nulls_ordering === 'SORTBY_NULLS_LAST') field.nulls = 'LAST';
    return field;
  });
  const notes: Note[] = [];
  const name = index.idxname ?? defaultName(target.name, columns.map((c) => c.column), 'idx');
  if (!index.idxname) notes.push({ level: 'info', text: `the SQL leaves the index unnamed; "${name}" is the name PostgreSQL would have chosen` });
  if (index.if_not_exists) notes.push({ level: 'info', text: 'IF NOT EXISTS dropped: tandem refuses to create an index that already exists' });
  const body: OperationBody<'create_index'> = { name, table: target.name, columns };
  if (index.unique) body.unique = true;
  if (method !== 'btree') body.method = method;
  const start = context.statement.firstToken;
  if (index.options?.length) {
    const keyword = findToken(context.parsed, context.statement, start, 'with');
    const inside = keyword === undefined ? undefined : insideParentheses(context.parsed, context.statement, keyword + 1);
    if (!inside) throw new Unconvertible('could not read the WITH (...) storage parameters');
    body.storage_parameters = inside.text;
  }
  if (index.whereClause) {
    const where = findToken(context.parsed, context.statement, tokenIndexAt(context.parsed, context.statement, context.statement.start), 'where');
    if (where === undefined) throw new Unconvertible('could not find WHERE in the statement text');
    body.predicate = expressionFrom(context.parsed, context.statement, where + 1).text;
  }
  return operation('create_index', body, notes);
}

function optionValue(value: unknown): string {
  const node = value as Record<string, Record<string, unknown>> | undefined;
  if (!node) return 'true';
  const integer = node.Integer;
  if (integer) return String(integer.ival ?? 0);
  const text = node.String?.sval ?? node.Float?.fval ?? node.Boolean?.boolval;
  return String(text ?? '');
}
