/** Rules about adding, changing, renaming and dropping columns of tables that already exist. */
import { asNode, displayRelation, firstLocation, relationOf, typeNames, typeSql } from '../../sqlparse/ast.js';
import { volatilityOf } from '../volatility.js';
import type { Problem, Rule } from '../types.js';
import { alterTable, constraintsOf, existingTableCommands } from './support.js';

const SERIAL_TYPES = new Set(['serial', 'serial4', 'bigserial', 'serial8', 'smallserial', 'serial2']);

export const addingRequiredColumn: Rule = {
  name: 'adding-required-column',
  severity: 'error',
  summary: 'ADD COLUMN ... NOT NULL without a DEFAULT',
  why:
    'Existing rows have no value for the new column, so the statement fails on any table that has rows; ' +
    'and the application versions already running do not send the column, so their INSERTs would fail too.',
  fix:
    'Add the column as nullable (or with a default), backfill it, then make it NOT NULL; tandem\'s add_column ' +
    'does all three with an `up` expression while old and new versions run side by side.',
  example: {
    bad: 'ALTER TABLE users ADD COLUMN plan text NOT NULL;',
    good: "ALTER TABLE users ADD COLUMN plan text NOT NULL DEFAULT 'free';",
  },
  check(context) {
    return existingTableCommands(context, 'AT_AddColumn').flatMap(({ cmd, at, relation }): Problem[] => {
      const column = asNode(cmd.def, 'ColumnDef');
      const constraints = constraintsOf(column);
      const notNull = column?.is_not_null || constraints.some((c) => c.contype === 'CONSTR_NOTNULL');
      const filled =
        constraints.some((c) => ['CONSTR_DEFAULT', 'CONSTR_IDENTITY', 'CONSTR_GENERATED'].includes(c.contype ?? '')) ||
        SERIAL_TYPES.has(typeNames(column?.typeName).join('.'));
      if (!notNull || filled) return [];
      return [{ at, message: `column "${column?.colname}" is added to ${displayRelation(relation)} as NOT NULL without a default` }];
    });
  },
};

export const addingColumnWithVolatileDefault: Rule = {
  name: 'adding-column-with-volatile-default',
  severity: 'error',
  summary: 'ADD COLUMN with a default that forces a table rewrite',
  why:
    'PostgreSQL 11 and later store a non-volatile default in the catalog and leave the rows alone, but a volatile ' +
    'default (a different value per row) and any default before PostgreSQL 11 rewrite the whole table while holding ' +
    'an ACCESS EXCLUSIVE lock that blocks every read and write.',
  fix:
    'Add the column without the default (or with a constant one), then fill existing rows in batches; tandem\'s ' +
    'add_column with an `up` expression backfills in batches without a long lock.',
  example: {
    bad: 'ALTER TABLE orders ADD COLUMN token uuid DEFAULT gen_random_uuid();',
    good: "ALTER TABLE orders ADD COLUMN status text DEFAULT 'new';",
  },
  check(context) {
    return existingTableCommands(context, 'AT_AddColumn').flatMap(({ cmd, at }): Problem[] => {
      const column = asNode(cmd.def, 'ColumnDef');
      const defaultConstraint = constraintsOf(column).find((c) => c.contype === 'CONSTR_DEFAULT');
      if (!defaultConstraint?.raw_expr || asNode(defaultConstraint.raw_expr, 'A_Const')?.isnull) return [];
      const where = firstLocation(defaultConstraint) ?? at;
      if (context.options.pgVersion < 11) {
        return [{ at: where, message: `column "${column?.colname}" has a default, which rewrites the table before PostgreSQL 11` }];
      }
      const { volatile, unknown } = volatilityOf(defaultConstraint.raw_expr);
      if (volatile.length) {
        return [{ at: where, message: `the default of column "${column?.colname}" calls volatile ${volatile.map((f) => `${f}()`).join(', ')}` }];
      }
      if (unknown.length) {
        return [
          {
            at: where,
            message:
              `the default of column "${column?.colname}" calls ${unknown.map((f) => `${f}()`).join(', ')}, which may be volatile ` +
              '(functions are VOLATILE unless declared otherwise)',
          },
        ];
      }
      return [];
    });
  },
};

export const addingSerialColumn: Rule = {
  name: 'adding-serial-column',
  severity: 'error',
  summary: 'ADD COLUMN of a serial, identity or stored generated column',
  why:
    'Each existing row needs its own value, so PostgreSQL rewrites the whole table under an ACCESS EXCLUSIVE lock ' +
    'that blocks every read and write until it is done.',
  fix:
    'Add a plain nullable column, attach the sequence or expression for new rows, and backfill existing rows in ' +
    'batches (tandem\'s add_column with an `up` expression does the backfill).',
  example: {
    bad: 'ALTER TABLE events ADD COLUMN seq bigserial;',
    good: 'ALTER TABLE events ADD COLUMN seq bigint;',
  },
  check(context) {
    return existingTableCommands(context, 'AT_AddColumn').flatMap(({ cmd, at }): Problem[] => {
      const column = asNode(cmd.def, 'ColumnDef');
      const type = typeNames(column?.typeName).join('.');
      const constraints = constraintsOf(column);
      let what: string | undefined;
      if (SERIAL_TYPES.has(type)) what = `a ${type} column`;
      else if (constraints.some((c) => c.contype === 'CONSTR_IDENTITY')) what = 'an identity column';
      else if (constraints.some((c) => c.contype === 'CONSTR_GENERATED' && c.generated_kind !== 'v')) what = 'a stored generated column';
      return what ? [{ at, message: `"${column?.colname}" is added as ${what}, which fills every existing row` }] : [];
    });
  },
};

export const changingColumnType: Rule = {
  name: 'changing-column-type',
  severity: 'error',
  summary: 'ALTER COLUMN ... TYPE on an existing table',
  why:
    'Most type changes rewrite the table and its indexes under an ACCESS EXCLUSIVE lock, and the application ' +
    'versions already running still read and write the old type.',
  fix:
    'Use tandem\'s alter_column with `type`, `up` and `down`: it adds a column of the new type, keeps both in sync ' +
    'with triggers and backfills in batches, so old and new versions both work.',
  example: {
    bad: 'ALTER TABLE accounts ALTER COLUMN balance TYPE numeric(20,2);',
    tandem: [
      'operations:',
      '  - alter_column:',
      '      table: accounts',
      '      column: balance',
      "      type: 'numeric(20,2)'",
      "      up: 'CAST(balance AS numeric(20,2))'",
      "      down: 'CAST(balance AS numeric(12,2))'",
    ].join('\n'),
  },
  check(context) {
    return existingTableCommands(context, 'AT_AlterColumnType').map(({ cmd, at, relation }) => {
      const type = asNode(cmd.def, 'ColumnDef')?.typeName;
      return { at, message: `column "${cmd.name}" of ${displayRelation(relation)} changes type${type ? ` to ${typeSql(type)}` : ''}` };
    });
  },
};

export const droppingColumn: Rule = {
  name: 'dropping-column',
  severity: 'error',
  summary: 'ALTER TABLE ... DROP COLUMN',
  why: 'The application versions already running still select and insert the column: their queries fail the moment it is gone.',
  fix:
    'Stop using the column in the application first, or use tandem\'s drop_column: it hides the column from the new ' +
    'version\'s schema at start and drops it only at complete, when no old version is left.',
  example: {
    bad: 'ALTER TABLE users DROP COLUMN nickname;',
    tandem: ['operations:', '  - drop_column:', '      table: users', '      column: nickname'].join('\n'),
  },
  check(context) {
    return existingTableCommands(context, 'AT_DropColumn').map(({ cmd, at, relation }) => ({
      at,
      message: `column "${cmd.name}" is dropped from ${displayRelation(relation)}`,
    }));
  },
};

export const renamingColumn: Rule = {
  name: 'renaming-column',
  severity: 'error',
  summary: 'ALTER TABLE ... RENAME COLUMN',
  why: 'The rename is instant, but every running application version that uses the old name breaks at once.',
  fix:
    'Use tandem\'s rename_column: the new version sees the new name through its version schema while old versions ' +
    'keep the old one, and the physical rename happens at complete.',
  example: {
    bad: 'ALTER TABLE users RENAME COLUMN email TO email_address;',
    tandem: ['operations:', '  - rename_column:', '      table: users', '      from: email', '      to: email_address'].join('\n'),
  },
  check(context) {
    const rename = asNode(context.statement.node, 'RenameStmt');
    if (rename?.renameType !== 'OBJECT_COLUMN' || rename.relationType !== 'OBJECT_TABLE') return [];
    if (context.state.isNewTable(relationOf(rename.relation))) return [];
    return [{ at: rename.relation?.location, message: `column "${rename.subname}" is renamed to "${rename.newname}"` }];
  },
};

export const setNotNullWithoutCheck: Rule = {
  name: 'set-not-null-without-check',
  severity: 'error',
  summary: 'ALTER COLUMN ... SET NOT NULL without a validated CHECK (column IS NOT NULL)',
  why:
    'SET NOT NULL scans the whole table to prove there are no NULLs while holding an ACCESS EXCLUSIVE lock. Since ' +
    'PostgreSQL 12 the scan is skipped when a validated CHECK (column IS NOT NULL) constraint already proves it.',
  fix:
    'Add CHECK (column IS NOT NULL) NOT VALID, VALIDATE CONSTRAINT in a separate statement (it does not block writes), ' +
    'then SET NOT NULL and drop the check; or use tandem\'s alter_column with nullable: false.',
  example: {
    bad: 'ALTER TABLE users ALTER COLUMN email SET NOT NULL;',
    good: [
      'ALTER TABLE users ADD CONSTRAINT users_email_not_null CHECK (email IS NOT NULL) NOT VALID;',
      'ALTER TABLE users VALIDATE CONSTRAINT users_email_not_null;',
      'ALTER TABLE users ALTER COLUMN email SET NOT NULL;',
    ].join('\n'),
  },
  check(context) {
    const alter = alterTable(context);
    if (!alter || alter.isNew) return [];
    return alter.commands.flatMap(({ cmd, at }): Problem[] => {
      if (cmd.subtype !== 'AT_SetNotNull' || !cmd.name) return [];
      if (context.options.pgVersion < 12) {
        return [
          {
            at,
            message: `SET NOT NULL on column "${cmd.name}" scans the table under an exclusive lock`,
            fix: 'Before PostgreSQL 12 there is no lock-free way: use tandem\'s alter_column with nullable: false, which enforces the rule with a NOT VALID check constraint.',
          },
        ];
      }
      if (context.state.hasValidatedNotNullCheck(alter.relation, cmd.name)) return [];
      return [{ at, message: `SET NOT NULL on column "${cmd.name}" without a validated CHECK ("${cmd.name}" IS NOT NULL)` }];
    });
  },
};

export const COLUMN_RULES: Rule[] = [
  addingRequiredColumn,
  addingColumnWithVolatileDefault,
  addingSerialColumn,
  changingColumnType,
  droppingColumn,
  renamingColumn,
  setNotNullWithoutCheck,
];
