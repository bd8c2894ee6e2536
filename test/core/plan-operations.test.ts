import { describe, expect, it } from 'vitest';
import { planOperations } from '../../src/engine/plan-migration.js';
import { parseMigration } from '../../src/migration/load.js';
import { Planner, type MigrationContext } from '../../src/core/planner.js';
import { SchemaModel, findColumn } from '../../src/core/model.js';
import { derivedIdent } from '../../src/core/quote.js';
import type { Plan, Step } from '../../src/core/steps.js';
import { catalogSnapshot, memoryInspector } from '../support/memory-inspector.js';

/**
 * Every operation's plan, planned over a catalog snapshot with no server: the exact steps and SQL of
 * start, complete and rollback, one file per case under plans/ (a change to what tandem emits shows
 * there as a diff to review). What the SQL does to a real database is the business of
 * test/operations; here it is only what is emitted, checked in milliseconds.
 */
const schema = catalogSnapshot([
  {
    name: 'users',
    columns: [
      { name: 'id', type: 'bigint', nullable: false, identity: 'a', sequence: 'public.users_id_seq' },
      { name: 'name', type: 'text', nullable: false },
      { name: 'email', type: 'text' },
      { name: 'age', type: 'integer' },
    ],
    constraints: [
      { name: 'users_pkey', type: 'primary_key', columns: ['id'], definition: 'PRIMARY KEY (id)', validated: true, indexName: 'users_pkey' },
      { name: 'users_age_check', type: 'check', columns: ['age'], definition: 'CHECK ((age > 0))', validated: true },
    ],
    indexes: [
      { name: 'users_pkey', columns: ['id'], unique: true, primary: true, valid: true, partial: false, replicaIdentity: false, definition: 'CREATE UNIQUE INDEX users_pkey ON public.users USING btree (id)', constraint: 'users_pkey' },
      { name: 'users_email_idx', columns: ['email'], unique: false, primary: false, valid: true, partial: false, replicaIdentity: false, definition: 'CREATE INDEX users_email_idx ON public.users USING btree (email)', constraint: null },
    ],
    inboundForeignKeys: [
      { table: 'public.posts', tableOid: 16385, name: 'posts_user_id_fkey', columns: ['user_id'], referencedColumns: ['id'], definition: 'FOREIGN KEY (user_id) REFERENCES users(id)' },
    ],
  },
  {
    name: 'posts',
    columns: [
      { name: 'id', type: 'bigint', nullable: false, default: "nextval('posts_id_seq'::regclass)", sequence: 'public.posts_id_seq' },
      { name: 'user_id', type: 'bigint', nullable: false },
      { name: 'title', type: 'text' },
    ],
    constraints: [
      { name: 'posts_pkey', type: 'primary_key', columns: ['id'], definition: 'PRIMARY KEY (id)', validated: true, indexName: 'posts_pkey' },
      { name: 'posts_user_id_fkey', type: 'foreign_key', columns: ['user_id'], definition: 'FOREIGN KEY (user_id) REFERENCES users(id)', validated: true, referencedTable: 'users', referencedColumns: ['id'] },
    ],
    indexes: [
      { name: 'posts_pkey', columns: ['id'], unique: true, primary: true, valid: true, partial: false, replicaIdentity: false, definition: 'CREATE UNIQUE INDEX posts_pkey ON public.posts USING btree (id)', constraint: 'posts_pkey' },
    ],
  },
]);

const context: MigrationContext = {
  schema: 'public',
  stateSchema: 'tandem',
  migrationName: '02_change',
  versionSchema: 'public_02_change',
  previousVersionSchema: 'public_01_init',
};

const cases: { name: string; operations: object[]; volatile?: string[] }[] = [
  { name: 'add_column-nullable-constant-default', operations: [{ add_column: { table: 'users', column: { name: 'nickname', type: 'text', nullable: true, default: "'none'" } } }] },
  { name: 'add_column-not-null-up', operations: [{ add_column: { table: 'users', up: "'user' || id", column: { name: 'handle', type: 'text', unique: true, check: { name: 'handle_length', constraint: 'length(handle) > 2' } } } }] },
  { name: 'add_column-volatile-default', volatile: ['gen_random_uuid()'], operations: [{ add_column: { table: 'posts', column: { name: 'token', type: 'uuid', default: 'gen_random_uuid()' } } }] },
  { name: 'add_column-references', operations: [{ add_column: { table: 'posts', column: { name: 'editor_id', type: 'bigint', nullable: true, references: { name: 'posts_editor_fk', table: 'users', column: 'id' } } } }] },
  { name: 'alter_column-type', operations: [{ alter_column: { table: 'users', column: 'age', type: 'bigint', up: 'age', down: 'age::integer' } }] },
  { name: 'alter_column-not-null', operations: [{ alter_column: { table: 'users', column: 'email', nullable: false, up: "coalesce(email, 'unknown')", down: 'email' } }] },
  { name: 'alter_column-shadowed-pk', operations: [{ alter_column: { table: 'users', column: 'id', type: 'numeric', up: 'id', down: 'id::bigint' } }] },
  { name: 'alter_column-comment', operations: [{ alter_column: { table: 'users', column: 'name', comment: 'full name' } }] },
  { name: 'alter_column-chained', operations: [
    { alter_column: { table: 'users', column: 'email', type: 'varchar(200)', up: 'email', down: 'email' } },
    { alter_column: { table: 'users', column: 'email', unique: { name: 'users_email_key' }, up: 'lower(email)', down: 'email' } },
  ] },
  { name: 'alter_column-serial', operations: [{ alter_column: { table: 'posts', column: 'id', type: 'numeric', up: 'id', down: 'id::bigint' } }] },
  { name: 'alter_column-comment-after-type', operations: [
    { alter_column: { table: 'users', column: 'age', type: 'bigint', up: 'age', down: 'age::integer' } },
    { alter_column: { table: 'users', column: 'age', comment: 'in years' } },
  ] },
  { name: 'create_constraint-primary-key-replaced', operations: [
    { drop_constraint: { table: 'posts', name: 'posts_pkey', up: 'id', down: 'id' } },
    { create_constraint: { table: 'posts', name: 'posts_id_user_pkey', type: 'primary_key', columns: ['id', 'user_id'], up: { id: 'id', user_id: 'user_id' }, down: { id: 'id', user_id: 'user_id' } } },
  ] },
  { name: 'create_constraint-check', operations: [{ create_constraint: { table: 'users', name: 'name_length', type: 'check', columns: ['name'], check: 'length(name) > 0', up: { name: "coalesce(nullif(name, ''), 'x')" }, down: { name: 'name' } } }] },
  { name: 'create_constraint-unique', operations: [{ create_constraint: { table: 'users', name: 'users_email_name_key', type: 'unique', columns: ['email', 'name'], up: { email: 'lower(email)', name: 'name' }, down: { email: 'email', name: 'name' } } }] },
  { name: 'create_constraint-foreign-key', operations: [{ create_constraint: { table: 'posts', name: 'posts_author_fk', type: 'foreign_key', columns: ['user_id'], references: { table: 'users', columns: ['id'] }, up: { user_id: 'user_id' }, down: { user_id: 'user_id' } } }] },
  { name: 'create_constraint-on-new-column', operations: [
    { add_column: { table: 'posts', column: { name: 'slug', type: 'text', nullable: true } } },
    { create_constraint: { table: 'posts', name: 'posts_slug_key', type: 'unique', columns: ['slug'], up: { slug: 'slug' }, down: { slug: 'slug' } } },
  ] },
  { name: 'drop_constraint', operations: [{ drop_constraint: { table: 'users', name: 'users_age_check', up: 'age', down: 'greatest(age, 1)' } }] },
  { name: 'drop_multicolumn_constraint', operations: [{ drop_multicolumn_constraint: { table: 'posts', name: 'posts_user_id_fkey', up: { user_id: 'user_id' }, down: { user_id: 'user_id' } } }] },
  { name: 'rename_constraint', operations: [{ rename_constraint: { table: 'users', from: 'users_age_check', to: 'age_is_positive' } }] },
  { name: 'create_table', operations: [{ create_table: { name: 'tags', comment: 'labels', columns: [
    { name: 'id', type: 'bigint', pk: true, generated: { identity: {} } },
    { name: 'label', type: 'text', unique: true, check: { name: 'label_not_empty', constraint: "label <> ''" } },
    { name: 'post_id', type: 'bigint', nullable: true, references: { name: 'tags_post_fk', table: 'posts', column: 'id', on_delete: 'CASCADE' } },
  ] } }] },
  { name: 'create_table-then-changes', operations: [
    { create_table: { name: 'tags', columns: [{ name: 'id', type: 'bigint', pk: true }, { name: 'label', type: 'text' }] } },
    { add_column: { table: 'tags', column: { name: 'color', type: 'text', nullable: true } } },
    { alter_column: { table: 'tags', column: 'label', nullable: true, default: "'none'" } },
    { create_constraint: { table: 'tags', name: 'tags_label_key', type: 'unique', columns: ['label'] } },
    { drop_column: { table: 'tags', column: 'color' } },
  ] },
  { name: 'drop_column', operations: [{ drop_column: { table: 'posts', column: 'title', down: "'untitled'" } }] },
  { name: 'rename_column', operations: [{ rename_column: { table: 'users', from: 'age', to: 'years' } }] },
  { name: 'rename_column-then-alter', operations: [
    { rename_column: { table: 'users', from: 'age', to: 'years' } },
    { alter_column: { table: 'users', column: 'years', type: 'bigint', up: 'age', down: 'years::integer' } },
  ] },
  { name: 'rename_column-then-drop-constraint', operations: [
    { rename_column: { table: 'users', from: 'age', to: 'years' } },
    { drop_constraint: { table: 'users', name: 'users_age_check', up: 'age', down: 'greatest(years, 1)' } },
  ] },
  { name: 'create_table-constraints-then-drop', operations: [
    { create_table: { name: 'tags', columns: [{ name: 'id', type: 'bigint' }, { name: 'label', type: 'text' }], constraints: [
      { name: 'tags_pkey', type: 'primary_key', columns: ['id'] },
      { name: 'tags_label_check', type: 'check', check: "label <> ''" },
    ] } },
    { drop_constraint: { table: 'tags', name: 'tags_label_check' } },
    { create_constraint: { table: 'tags', name: 'tags_label_key', type: 'unique', columns: ['label'] } },
  ] },
  { name: 'rename_table', operations: [{ rename_table: { from: 'posts', to: 'articles' } }] },
  { name: 'drop_table', operations: [{ drop_table: { name: 'posts' } }] },
  { name: 'drop_table-after-changes', operations: [
    { alter_column: { table: 'posts', column: 'title', type: 'varchar(100)', up: 'title', down: 'title' } },
    { drop_table: { name: 'posts' } },
  ] },
  { name: 'create_index', operations: [{ create_index: { table: 'users', name: 'users_name_idx', columns: [{ column: 'name' }], predicate: 'age > 18' } }] },
  { name: 'create_index-on-shadow', operations: [
    { create_index: { table: 'users', name: 'users_age_idx', columns: [{ column: 'age' }] } },
    { alter_column: { table: 'users', column: 'age', type: 'bigint', up: 'age', down: 'age::integer' } },
  ] },
  { name: 'drop_index', operations: [{ drop_index: { name: 'users_email_idx' } }] },
  { name: 'set_replica_identity', operations: [{ set_replica_identity: { table: 'users', identity: { type: 'full' } } }] },
  { name: 'sql', operations: [{ sql: { up: 'CREATE TABLE audit (id int)', down: 'DROP TABLE audit' } }] },
  { name: 'sql-on-complete', operations: [{ sql: { up: 'ANALYZE users', onComplete: true } }] },
];

describe('plans without a database', () => {
  it.each(cases)('$name', async ({ name, operations, volatile }) => {
    const { migration } = parseMigration(JSON.stringify({ name: context.migrationName, operations }), { file: `${name}.json`, format: 'json' });
    const { plan, warnings } = await planOperations(schema, migration, context, memoryInspector({ volatile }));
    await expect(render(plan, warnings)).toMatchFileSnapshot(`plans/${name}.sql`);
  });
});

describe('shadow steps', () => {
  it('are computed from the model without changing it: the constraint moves are returned for the planner to make', () => {
    const model = new SchemaModel(schema);
    const planner = new Planner(model, context, memoryInspector());
    const users = model.table('users', 'table');
    planner.shadowColumn(users, findColumn(users, 'age')!);
    const before = structuredClone(users.constraints);
    const shadows = planner.shadowTable(users)!;
    const temporary = (kind: string, name: string) => derivedIdent(`_tandem_${kind}_`, name);
    const first = shadows.steps(temporary);
    expect(users.constraints).toEqual(before);
    expect(shadows.steps(temporary)).toEqual(first);
    expect(first.constraintMoves).toEqual([{ from: 'users_age_check', to: '_tandem_c_users_age_check' }]);
  });
});

function render(plan: Plan, warnings: string[]): string {
  const lines = warnings.map((w) => `-- warning: ${w}`);
  for (const [phase, steps] of [['start', plan.start], ['complete', plan.complete], ['rollback', plan.rollback]] as const) {
    lines.push('', `-- ==== ${phase} ====`);
    for (const step of steps) lines.push(...renderStep(step));
  }
  for (const expected of plan.expect ?? []) lines.push(`-- expect ${expected.kind} ${expected.table}.${expected.name}`);
  return `${lines.join('\n')}\n`;
}

function renderStep(step: Step): string[] {
  const facts = [
    step.id !== undefined ? `#${step.id}` : '',
    step.kind,
    step.kind === 'sql' && step.lockTarget ? `lock ${step.lockTarget}` : '',
    step.kind === 'sql' && !step.transactional ? 'not transactional' : '',
    step.kind === 'sql' && step.destructive ? 'destructive' : '',
    'undoes' in step && step.undoes?.length ? `undoes ${step.undoes.join(',')}` : '',
    step.origin ? `operation ${step.origin.operation}` : '',
  ].filter(Boolean);
  const head = `-- ${step.description} [${facts.join('; ')}]`;
  if (step.kind === 'backfill') return [head, `--   table ${step.table}, touch ${step.touchColumn}${step.assignments ? `, SET ${step.assignments}` : ''}`];
  if (step.kind !== 'sql') return [head];
  return [head, ...step.statements.map((s) => `${s};`), ...(step.cleanup ?? []).map((s) => `-- cleanup before a retry:\n${s};`)];
}
