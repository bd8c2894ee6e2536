import { expect } from 'vitest';
import { columnNames, indexesOf } from '../support/migrations.js';
import { runOperationCases } from '../support/cases.js';

const setup = `CREATE EXTENSION IF NOT EXISTS pg_trgm;
  CREATE TABLE docs (id int PRIMARY KEY, title text NOT NULL, body text, tags text[], created timestamptz DEFAULT now(), archived boolean DEFAULT false);
  CREATE INDEX docs_created ON docs (created);
  CREATE UNIQUE INDEX docs_title_unique ON docs (title);
  INSERT INTO docs (id, title, body) SELECT g, 'doc ' || g, 'body ' || g FROM generate_series(1, 50) g;`;

runOperationCases('create_index, drop_index, sql, set_replica_identity', [
  {
    name: 'create_index: every option, built concurrently',
    setup,
    migrations: [
      {
        name: '01_indexes',
        operations: [
          {
            create_index: {
              name: 'docs_title_lower',
              table: 'docs',
              columns: [{ column: 'title', collate: 'C', sort: 'DESC', nulls: 'LAST' }, { column: 'id' }],
              unique: true,
              predicate: 'NOT archived',
              storage_parameters: 'fillfactor=70',
            },
          },
          { create_index: { name: 'docs_body_trgm', table: 'docs', method: 'gist', columns: [{ column: 'body', opclass: { name: 'gist_trgm_ops', params: ['siglen=32'] } }] } },
          { create_index: { name: 'docs_tags', table: 'docs', method: 'gin', columns: [{ column: 'tags' }] } },
        ],
      },
    ],
    afterStart: async (t) => {
      const indexes = await indexesOf(t.db, 'public', 'docs');
      expect(indexes.docs_title_lower).toBe(
        'CREATE UNIQUE INDEX docs_title_lower ON public.docs USING btree (title COLLATE "C" DESC NULLS LAST, id) WITH (fillfactor=\'70\') WHERE (NOT archived)',
      );
      expect(indexes.docs_body_trgm).toBe('CREATE INDEX docs_body_trgm ON public.docs USING gist (body gist_trgm_ops (siglen=\'32\'))');
      expect(indexes.docs_tags).toBe('CREATE INDEX docs_tags ON public.docs USING gin (tags)');
      const valid = await t.db.query(`SELECT bool_and(indisvalid) AS ok FROM pg_index WHERE indrelid = 'docs'::regclass`);
      expect(valid.rows[0].ok).toBe(true);
    },
    afterComplete: async (t) => {
      expect(Object.keys(await indexesOf(t.db, 'public', 'docs'))).toContain('docs_tags');
    },
  },
  {
    name: 'drop_index: kept for the old version, dropped concurrently at complete',
    setup,
    migrations: [{ name: '01_drop_created', operations: [{ drop_index: { name: 'docs_created' } }] }],
    afterStart: async (t) => {
      expect(Object.keys(await indexesOf(t.db, 'public', 'docs'))).toContain('docs_created');
    },
    afterComplete: async (t) => {
      expect(Object.keys(await indexesOf(t.db, 'public', 'docs'))).not.toContain('docs_created');
    },
  },
  {
    name: 'sql: raw up and down, the version schema reflects what it did',
    setup,
    migrations: [
      {
        name: '01_raw',
        operations: [{ sql: { up: 'ALTER TABLE docs ADD COLUMN summary text; CREATE TABLE notes (id int)', down: 'DROP TABLE notes; ALTER TABLE docs DROP COLUMN summary' } }],
      },
    ],
    afterStart: async (t) => {
      expect(await columnNames(t.new, t.newSchema, 'docs')).toContain('summary');
      expect(await columnNames(t.new, t.newSchema, 'notes')).toEqual(['id']);
    },
    afterComplete: async (t) => {
      expect(await columnNames(t.db, 'public', 'docs')).toContain('summary');
    },
  },
  {
    name: 'sql onComplete: runs at complete, not at start',
    setup,
    migrations: [{ name: '01_on_complete', operations: [{ sql: { up: 'CREATE TABLE audit (id int)', onComplete: true } }] }],
    afterStart: async (t) => {
      expect((await t.db.query(`SELECT to_regclass('audit') AS t`)).rows[0].t).toBeNull();
    },
    afterComplete: async (t) => {
      expect((await t.db.query(`SELECT to_regclass('audit') IS NOT NULL AS t`)).rows[0].t).toBe(true);
    },
  },
  {
    name: 'set_replica_identity: full, then back on rollback',
    setup,
    migrations: [{ name: '01_identity_full', operations: [{ set_replica_identity: { table: 'docs', identity: { type: 'full', index: '' } } }] }],
    afterStart: async (t) => {
      expect((await t.db.query(`SELECT relreplident FROM pg_class WHERE oid = 'docs'::regclass`)).rows[0].relreplident).toBe('f');
    },
    afterRollback: async (t) => {
      expect((await t.db.query(`SELECT relreplident FROM pg_class WHERE oid = 'docs'::regclass`)).rows[0].relreplident).toBe('d');
    },
  },
  {
    name: 'set_replica_identity: using a unique index',
    setup,
    migrations: [{ name: '01_identity_index', operations: [{ set_replica_identity: { table: 'docs', identity: { type: 'index', index: 'docs_title_unique' } } }] }],
    afterComplete: async (t) => {
      const { rows } = await t.db.query(`SELECT indisreplident FROM pg_index WHERE indexrelid = 'docs_title_unique'::regclass`);
      expect(rows[0].indisreplident).toBe(true);
    },
  },
]);
