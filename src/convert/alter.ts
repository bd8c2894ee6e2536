/**
 * ALTER TABLE, one subcommand at a time. Each subcommand with a tandem equivalent becomes that
 * operation; the others become a `sql` operation holding just that subcommand, so one exotic
 * clause does not drag the rest of the statement into raw SQL.
 */
import type { AlterTableCmd, AlterTableStmt, Constraint } from 'libpg-query';
import { asNode, identifierSql, typeSql } from '../sqlparse/ast.js';
import { alterCommandStarts, expressionFrom, textOf } from '../sqlparse/slice.js';
import { placeholder } from '../migration/placeholders.js';
import { convertColumn } from './column.js';
import { operation, rawSql, tableName, Unconvertible, type ConvertContext, type ConvertedOperation, type Note } from './context.js';
import { columnsReferenced, tableConstraint } from './table.js';

const review = (text: string): Note => ({ level: 'review', text });
const info = (text: string): Note => ({ level: 'info', text });

export function convertAlterTable(context: ConvertContext, alter: AlterTableStmt): ConvertedOperation[] {
  if (alter.objtype !== 'OBJECT_TABLE') return [rawSql(context, 'only ALTER TABLE on tables has tandem operations')];
  const target = tableName(context, alter.relation);
  if ('problem' in target) return [rawSql(context, target.problem)];
  const starts = alterCommandStarts(context.parsed, context.statement, alter.relation?.location);
  const commands = (alter.cmds ?? []).flatMap((node) => {
    const cmd = asNode(node, 'AlterTableCmd');
    return cmd ? [cmd] : [];
  });
  const header = textOf(context.parsed, context.statement.firstToken, starts[0] ?? context.statement.endToken);
  return commands.map((cmd, index) => {
    const first = starts[index] ?? context.statement.firstToken;
    // The subcommand's own text runs to the comma before the next one.
    const end = starts[index + 1] !== undefined ? starts[index + 1]! - 1 : context.statement.endToken;
    const command: Subcommand = { cmd, table: target.name, first, end };
    try {
      return convertCommand(context, command);
    } catch (error) {
      if (!(error instanceof Unconvertible)) throw error;
      const text = commands.length > 1 ? `${header} ${textOf(context.parsed, first, end)}` : undefined;
      return rawSql(context, error.message, text);
    }
  });
}

interface Subcommand {
  cmd: AlterTableCmd;
  table: string;
  /** Token range of the subcommand's text. */
  first: number;
  end: number;
}

function convertCommand(context: ConvertContext, { cmd, table, first, end }: Subcommand): ConvertedOperation {
  const column = cmd.name ?? '';
  // Column names inside SQL expressions need quoting where the name needs it (`"Email"`).
  const ref = identifierSql(column);
  switch (cmd.subtype) {
    case 'AT_AddColumn': {
      const definition = asNode(cmd.def, 'ColumnDef');
      if (!definition) throw new Unconvertible('ADD COLUMN without a column definition');
      const converted = convertColumn(context, table, definition);
      if (converted.column.pk || converted.constraints.length) throw new Unconvertible('add_column cannot add a primary key or a named unique constraint');
      const notes = [...converted.notes];
      if (cmd.missing_ok) notes.push(info('IF NOT EXISTS dropped: tandem refuses to add a column that already exists'));
      const { column: added } = converted;
      if (added.nullable === false && added.default === undefined && !added.generated) {
        notes.push(
          review(
            `existing rows get the value of "up" for "${added.name}", and the SQL gave none (it fails on a table with rows); ` +
              'replace the placeholder with the value they should get (tandem start refuses the file until then)',
          ),
        );
        return operation('add_column', { table, column: added, up: placeholder(`the value existing rows get for ${added.name}`) }, notes);
      }
      return operation('add_column', { table, column: added }, notes);
    }
    case 'AT_DropColumn': {
      const notes: Note[] = [];
      if (cmd.missing_ok) notes.push(info('IF EXISTS dropped: tandem checks that the column exists'));
      if (cmd.behavior === 'DROP_CASCADE') notes.push(review('CASCADE dropped: objects that depend on the column make the drop fail at complete'));
      return operation('drop_column', { table, column }, notes);
    }
    case 'AT_AlterColumnType': {
      const definition = asNode(cmd.def, 'ColumnDef');
      if (!definition?.typeName) throw new Unconvertible('ALTER COLUMN TYPE without a type');
      if (definition.collClause) throw new Unconvertible('a COLLATE clause in ALTER COLUMN TYPE has no alter_column form');
      const type = typeSql(definition.typeName);
      let up = `CAST(${ref} AS ${type})`;
      const notes: Note[] = [];
      if (definition.raw_default) {
        // USING <expression> is exactly the old-to-new conversion alter_column calls `up`.
        const using = findUsing(context, first, end);
        up = expressionFrom(context.parsed, context.statement, using + 1).text;
      } else {
        notes.push(review(`"up" converts existing values the way ALTER COLUMN TYPE would (an assignment cast); adjust it if the cast is not what you want`));
      }
      notes.push(
        review(
          `"down" turns values written by the new version back into the old type for versions still running; ` +
            `the SQL does not say what the old type is, so it relies on PostgreSQL's assignment cast: write CAST(${ref} AS <old type>) or your own conversion`,
        ),
      );
      return operation('alter_column', { table, column, type, up, down: ref }, notes);
    }
    case 'AT_SetNotNull':
      return operation('alter_column', { table, column, nullable: false, up: ref }, [
        review(`rows where "${column}" is NULL make complete fail, as SET NOT NULL would; to fill them instead, write up: COALESCE(${ref}, <value>)`),
      ]);
    case 'AT_DropNotNull':
      return operation('alter_column', { table, column, nullable: true, down: ref }, [
        review(
          `while old versions run, NULLs written by the new version must become a value the old NOT NULL column accepts; ` +
            `write down: COALESCE(${ref}, <value>)`,
        ),
      ]);
    case 'AT_ColumnDefault': {
      if (!cmd.def) return operation('alter_column', { table, column, default: null });
      return operation('alter_column', { table, column, default: expressionFrom(context.parsed, context.statement, defaultStart(context, first)).text });
    }
    case 'AT_AddConstraint':
      return addConstraint(context, table, asNode(cmd.def, 'Constraint'));
    case 'AT_DropConstraint': {
      const notes: Note[] = [];
      if (cmd.missing_ok) notes.push(info('IF EXISTS dropped: tandem checks that the constraint exists'));
      if (cmd.behavior === 'DROP_CASCADE') notes.push(review('CASCADE dropped: dependent objects make the drop fail'));
      return operation('drop_constraint', { table, name: column }, notes);
    }
    case 'AT_ReplicaIdentity': {
      const identity = asNode(cmd.def, 'ReplicaIdentityStmt');
      const kinds: Record<string, string> = { d: 'default', f: 'full', n: 'nothing', i: 'index' };
      const type = kinds[identity?.identity_type ?? ''];
      if (!type) throw new Unconvertible('an unknown REPLICA IDENTITY form');
      return operation('set_replica_identity', { table, identity: type === 'index' ? { type, index: identity!.name ?? '' } : { type } });
    }
    default:
      throw new Unconvertible(`ALTER TABLE ... ${describeSubtype(cmd.subtype)} has no tandem operation`);
  }
}

function addConstraint(context: ConvertContext, table: string, constraint: Constraint | undefined): ConvertedOperation {
  if (!constraint) throw new Unconvertible('ADD CONSTRAINT without a constraint');
  if (constraint.indexname) {
    throw new Unconvertible('ADD CONSTRAINT ... USING INDEX is already safe (the index exists) and has no create_constraint form');
  }
  if (constraint.contype === 'CONSTR_EXCLUSION') throw new Unconvertible('create_constraint has no exclusion constraints');
  if (constraint.deferrable || constraint.initdeferred) throw new Unconvertible('create_constraint cannot make a constraint DEFERRABLE');
  const converted = tableConstraint(context, table, constraint);
  const columns = converted.type === 'check' ? columnsReferenced(constraint.raw_expr) : (converted.columns ?? []);
  if (!columns.length) throw new Unconvertible('a constraint that involves no column has no create_constraint form');
  const identity = Object.fromEntries(columns.map((c) => [c, identifierSql(c)]));
  const body = {
    table,
    name: converted.name,
    type: converted.type as 'unique' | 'check' | 'foreign_key' | 'primary_key',
    columns,
    ...(converted.check !== undefined ? { check: converted.check } : {}),
    ...(converted.no_inherit ? { no_inherit: true } : {}),
    ...(converted.index_parameters ? { index_parameters: converted.index_parameters } : {}),
    ...(converted.references ? { references: converted.references } : {}),
    up: { ...identity },
    down: { ...identity },
  };
  const notes: Note[] = [
    review(
      'up/down copy each column unchanged, so rows that break the constraint make complete fail, as the SQL would; ' +
        'write expressions that fix such rows if there may be any',
    ),
  ];
  if (constraint.skip_validation) notes.push(info('NOT VALID dropped: tandem adds the constraint NOT VALID itself and validates it at complete'));
  return operation('create_constraint', body, notes);
}

/** The USING keyword of an ALTER COLUMN ... TYPE subcommand. */
function findUsing(context: ConvertContext, first: number, end: number): number {
  for (let i = first; i < end; i++) if (context.parsed.tokens[i]!.text.toLowerCase() === 'using') return i;
  throw new Unconvertible('could not find USING in the statement text');
}

/** The token after SET DEFAULT in `ALTER [COLUMN] c SET DEFAULT expr`. */
function defaultStart(context: ConvertContext, first: number): number {
  for (let i = first; i < context.statement.endToken; i++) if (context.parsed.tokens[i]!.text.toLowerCase() === 'default') return i + 1;
  throw new Unconvertible('could not find DEFAULT in the statement text');
}

function describeSubtype(subtype: string | undefined): string {
  return (subtype ?? 'this').replace(/^AT_/, '').replace(/([a-z])([A-Z])/g, '$1 $2').toUpperCase();
}

