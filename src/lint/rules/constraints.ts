/** Rules about adding constraints to tables that already exist. */
import type { Constraint } from 'libpg-query';
import { asNode, displayRelation } from '../../sqlparse/ast.js';
import type { Problem, Rule, RuleContext } from '../types.js';
import { constraintOf, constraintsOf, existingTableCommands } from './support.js';

export const constraintWithoutNotValid: Rule = {
  name: 'constraint-without-not-valid',
  severity: 'error',
  summary: 'ADD CONSTRAINT ... CHECK or FOREIGN KEY without NOT VALID',
  why:
    'Adding the constraint checks every existing row while holding a lock that blocks writes (ACCESS EXCLUSIVE for ' +
    'CHECK; SHARE ROW EXCLUSIVE on both tables for a foreign key) for as long as the scan takes.',
  fix:
    'Add it NOT VALID (new rows are checked at once, nothing is scanned), then VALIDATE CONSTRAINT in a separate ' +
    'transaction: validation takes a lock that lets reads and writes continue. tandem\'s create_constraint does this.',
  example: {
    bad: 'ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id);',
    good: [
      'ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;',
      'ALTER TABLE orders VALIDATE CONSTRAINT orders_user_fk;',
    ].join('\n'),
  },
  check(context) {
    return addedConstraints(context).flatMap(({ constraint, at, table }): Problem[] => {
      if (constraint.contype !== 'CONSTR_CHECK' && constraint.contype !== 'CONSTR_FOREIGN') return [];
      if (constraint.skip_validation) return [];
      const what = constraint.contype === 'CONSTR_CHECK' ? 'CHECK' : 'FOREIGN KEY';
      const name = constraint.conname ? ` "${constraint.conname}"` : '';
      return [{ at, message: `${what} constraint${name} on ${table} is added without NOT VALID` }];
    });
  },
};

export const addingPrimaryKeyWithoutIndex: Rule = {
  name: 'adding-primary-key-without-index',
  severity: 'error',
  summary: 'ADD PRIMARY KEY that builds its index in place',
  why:
    'The primary key\'s unique index is built while the table is locked ACCESS EXCLUSIVE: no reads or writes until ' +
    'the whole index exists (and NOT NULL is checked on every key column).',
  fix:
    'Build a unique index with CREATE UNIQUE INDEX CONCURRENTLY first, then ADD CONSTRAINT ... PRIMARY KEY USING INDEX, ' +
    'which only takes a brief lock.',
  example: {
    bad: 'ALTER TABLE items ADD PRIMARY KEY (id);',
    good: ['CREATE UNIQUE INDEX CONCURRENTLY items_pkey ON items (id);', 'ALTER TABLE items ADD CONSTRAINT items_pkey PRIMARY KEY USING INDEX items_pkey;'].join('\n'),
  },
  check: (context) => constraintsBuildingIndexes(context, 'CONSTR_PRIMARY', 'PRIMARY KEY'),
};

export const addingUniqueWithoutIndex: Rule = {
  name: 'adding-unique-without-index',
  severity: 'error',
  summary: 'ADD UNIQUE constraint that builds its index in place',
  why: 'The unique index behind the constraint is built while the table is locked ACCESS EXCLUSIVE: no reads or writes until it is done.',
  fix:
    'Build the index with CREATE UNIQUE INDEX CONCURRENTLY, then ADD CONSTRAINT ... UNIQUE USING INDEX; or use ' +
    'tandem\'s create_constraint with type unique, which does the same.',
  example: {
    bad: 'ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email);',
    good: [
      'CREATE UNIQUE INDEX CONCURRENTLY users_email_key ON users (email);',
      'ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE USING INDEX users_email_key;',
    ].join('\n'),
  },
  check: (context) => constraintsBuildingIndexes(context, 'CONSTR_UNIQUE', 'UNIQUE'),
};

interface AddedConstraint {
  constraint: Constraint;
  at: number | undefined;
  table: string;
}

/** Constraints added to an existing table, by ADD CONSTRAINT or inline in ADD COLUMN. */
function addedConstraints(context: RuleContext, includeColumns = false): AddedConstraint[] {
  return existingTableCommands(context, 'AT_AddConstraint', 'AT_AddColumn').flatMap(({ cmd, at, relation }) => {
    const table = displayRelation(relation);
    if (cmd.subtype === 'AT_AddConstraint') {
      const constraint = constraintOf(cmd.def);
      return constraint ? [{ constraint, at, table }] : [];
    }
    if (!includeColumns) return [];
    return constraintsOf(asNode(cmd.def, 'ColumnDef')).map((constraint) => ({ constraint, at: constraint.location ?? at, table }));
  });
}

function constraintsBuildingIndexes(context: RuleContext, type: 'CONSTR_PRIMARY' | 'CONSTR_UNIQUE', words: string): Problem[] {
  return addedConstraints(context, true).flatMap(({ constraint, at, table }): Problem[] => {
    if (constraint.contype !== type || constraint.indexname) return [];
    return [{ at, message: `${words} constraint on ${table} builds its index while the table is locked` }];
  });
}

export const CONSTRAINT_RULES: Rule[] = [constraintWithoutNotValid, addingPrimaryKeyWithoutIndex, addingUniqueWithoutIndex];

