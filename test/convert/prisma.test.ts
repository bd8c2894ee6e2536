/**
 * Prisma migrations that used to break the engine (issue #17), converted with `tandem convert` and
 * applied with `tandem start --complete` on tables that hold rows, then checked in the catalog.
 */
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { convertSql, type ConvertedMigration } from '../../src/convert/convert.js';
import { toYaml } from '../../src/convert/emit.js';
import type { OperationBody } from '../../src/migration/format.js';
import { usePostgres } from '../support/harness.js';
import { columnsOf, constraintsOf, indexesOf, ok, tandem } from '../support/migrations.js';

const users = `CREATE TABLE "User" (id serial PRIMARY KEY, name text);
               INSERT INTO "User" (name) SELECT 'u' || g FROM generate_series(1, 20) g;`;

describe('Prisma migrations converted and applied', () => {
  const pg = usePostgres();

  /** Sets up `before`, converts `sql` (with `edit` standing for the user's review), and applies every migration it needs. */
  async function apply(before: string, sql: string, edit: (migration: ConvertedMigration) => void = () => {}): Promise<string[]> {
    await pg.query(before);
    const conversion = await convertSql(sql, 'migration.sql', { name: '20240101_prisma', schema: 'public' });
    const dir = await mkdtemp(join(tmpdir(), 'tandem-prisma-'));
    ok(await tandem(pg.url, ['init']));
    for (const migration of conversion.migrations) {
      edit(migration);
      const file = join(dir, `${migration.name}.yaml`);
      await writeFile(file, toYaml(migration));
      ok(await tandem(pg.url, ['start', file, '--complete']));
    }
    return conversion.migrations.flatMap((m) => m.operations.map((o) => o.kind));
  }

  it('a unique index and a foreign key on the same column both survive complete', async () => {
    const kinds = await apply(
      `CREATE TABLE "Template" (id serial PRIMARY KEY);
       INSERT INTO "Template" SELECT FROM generate_series(1, 10);
       CREATE TABLE "DocumentMeta" (id serial PRIMARY KEY, "templateId" integer, title text);
       INSERT INTO "DocumentMeta" ("templateId", title) SELECT g, 'd' FROM generate_series(1, 10) g;
       INSERT INTO "DocumentMeta" (title) SELECT 'n' FROM generate_series(1, 10);`,
      `CREATE UNIQUE INDEX "DocumentMeta_templateId_key" ON "DocumentMeta"("templateId");
       ALTER TABLE "DocumentMeta" ADD CONSTRAINT "DocumentMeta_templateId_fkey" FOREIGN KEY ("templateId") REFERENCES "Template"("id") ON DELETE SET NULL ON UPDATE CASCADE;`,
    );
    expect(kinds).toEqual(['create_index', 'create_constraint']);
    const db = await pg.client();
    expect((await indexesOf(db, 'public', 'DocumentMeta')).DocumentMeta_templateId_key).toBe(
      'CREATE UNIQUE INDEX "DocumentMeta_templateId_key" ON public."DocumentMeta" USING btree ("templateId")',
    );
    expect((await constraintsOf(db, 'public', 'DocumentMeta')).DocumentMeta_templateId_fkey).toBe(
      'FOREIGN KEY ("templateId") REFERENCES "Template"(id) ON UPDATE CASCADE ON DELETE SET NULL',
    );
    await expect(db.query(`INSERT INTO "DocumentMeta" ("templateId") VALUES (1)`)).rejects.toThrow(/DocumentMeta_templateId_key/);
  });

  it('dropping a foreign key and then its table', async () => {
    const kinds = await apply(
      `${users}
       CREATE TABLE "Banner" (id serial PRIMARY KEY, "userId" integer CONSTRAINT "Banner_userId_fkey" REFERENCES "User"(id), text text);
       INSERT INTO "Banner" ("userId", text) SELECT g, 'b' FROM generate_series(1, 20) g;`,
      `ALTER TABLE "Banner" DROP CONSTRAINT "Banner_userId_fkey";
       DROP TABLE "Banner";`,
    );
    // The constraint goes with its table (the engine also takes the two in this order: test/engine/complete-recovery.test.ts).
    expect(kinds).toEqual(['drop_table']);
    const { rows } = await pg.query(`SELECT to_regclass('public."Banner"') AS banner, (SELECT count(*)::int FROM "User") AS users`);
    expect(rows[0]).toEqual({ banner: null, users: 20 });
  });

  it('a foreign key on a column added in the same migration', async () => {
    const kinds = await apply(
      `${users}
       CREATE TABLE "Notification" (id serial PRIMARY KEY, "userId" integer REFERENCES "User"(id), body text);
       INSERT INTO "Notification" ("userId", body) SELECT g, 'n' FROM generate_series(1, 20) g;`,
      `ALTER TABLE "Notification" DROP COLUMN "userId",
       ADD COLUMN "recipientId" INTEGER NOT NULL;
       ALTER TABLE "Notification" ADD CONSTRAINT "Notification_recipientId_fkey" FOREIGN KEY ("recipientId") REFERENCES "User"("id") ON DELETE RESTRICT ON UPDATE CASCADE;`,
      (migration) => {
        // The REVIEW placeholder convert leaves for existing rows, as a user would fill it in.
        const add = migration.operations.find((o) => o.kind === 'add_column');
        if (add) (add.body as OperationBody<'add_column'>).up = '"userId"';
      },
    );
    expect(kinds).toEqual(['drop_column', 'add_column', 'create_constraint']);
    const db = await pg.client();
    expect((await columnsOf(db, 'public', 'Notification')).map((c) => c.name)).toEqual(['id', 'body', 'recipientId']);
    expect((await constraintsOf(db, 'public', 'Notification')).Notification_recipientId_fkey).toBe(
      'FOREIGN KEY ("recipientId") REFERENCES "User"(id) ON UPDATE CASCADE ON DELETE RESTRICT',
    );
    expect((await db.query(`SELECT count(*)::int AS n FROM "Notification" WHERE "recipientId" = id`)).rows[0].n).toBe(20);
  });

  it('a foreign key dropped and added again under the same name (a new ON DELETE)', async () => {
    await apply(
      `${users}
       CREATE TABLE "Post" (id serial PRIMARY KEY, "authorId" integer CONSTRAINT "Post_authorId_fkey" REFERENCES "User"(id) ON DELETE RESTRICT);
       INSERT INTO "Post" ("authorId") SELECT g FROM generate_series(1, 20) g;`,
      `ALTER TABLE "Post" DROP CONSTRAINT "Post_authorId_fkey";
       ALTER TABLE "Post" ADD CONSTRAINT "Post_authorId_fkey" FOREIGN KEY ("authorId") REFERENCES "User"("id") ON DELETE CASCADE ON UPDATE CASCADE;`,
    );
    const db = await pg.client();
    expect(await constraintsOf(db, 'public', 'Post')).toEqual({
      Post_authorId_fkey: 'FOREIGN KEY ("authorId") REFERENCES "User"(id) ON UPDATE CASCADE ON DELETE CASCADE',
      Post_pkey: 'PRIMARY KEY (id)',
    });
    await db.query(`DELETE FROM "User" WHERE id = 1`);
    expect((await db.query(`SELECT count(*)::int AS n FROM "Post"`)).rows[0].n).toBe(19);
  });

  it('a foreign key dropped, then the primary key it referenced', async () => {
    await apply(
      `${users}
       CREATE TABLE "Post" (id serial PRIMARY KEY, "authorId" integer CONSTRAINT "Post_authorId_fkey" REFERENCES "User"(id));
       INSERT INTO "Post" ("authorId") SELECT g FROM generate_series(1, 20) g;`,
      `ALTER TABLE "Post" DROP CONSTRAINT "Post_authorId_fkey";
       ALTER TABLE "User" DROP CONSTRAINT "User_pkey";`,
    );
    const db = await pg.client();
    expect(await constraintsOf(db, 'public', 'User')).toEqual({});
    expect(await constraintsOf(db, 'public', 'Post')).toEqual({ Post_pkey: 'PRIMARY KEY (id)' });
    // The serial's sequence stayed with the column.
    expect((await db.query(`SELECT pg_get_serial_sequence('"User"', 'id') AS seq`)).rows[0].seq).toBe('public."User_id_seq"');
    await db.query(`INSERT INTO "User" (name) VALUES ('next')`);
    expect((await db.query(`SELECT max(id)::int AS id FROM "User"`)).rows[0].id).toBe(21);
  });

  it('DROP TABLE IF EXISTS … CASCADE, then CREATE TABLE of the same name with its index and key', async () => {
    await apply(
      `${users}
       CREATE TABLE "Session" (id serial PRIMARY KEY, "sessionToken" text NOT NULL, data text);
       CREATE UNIQUE INDEX "Session_sessionToken_key" ON "Session"("sessionToken");
       INSERT INTO "Session" ("sessionToken", data) SELECT 's' || g, 'x' FROM generate_series(1, 20) g;`,
      `DROP TABLE IF EXISTS "Session" CASCADE;
       CREATE TABLE "Session" (
           "id" SERIAL NOT NULL,
           "sessionToken" TEXT NOT NULL,
           "userId" INTEGER NOT NULL,
           CONSTRAINT "Session_pkey" PRIMARY KEY ("id")
       );
       CREATE UNIQUE INDEX "Session_sessionToken_key" ON "Session"("sessionToken");
       ALTER TABLE "Session" ADD CONSTRAINT "Session_userId_fkey" FOREIGN KEY ("userId") REFERENCES "User"("id") ON DELETE CASCADE ON UPDATE CASCADE;`,
    );
    const db = await pg.client();
    expect((await columnsOf(db, 'public', 'Session')).map((c) => c.name)).toEqual(['id', 'sessionToken', 'userId']);
    expect(Object.keys(await indexesOf(db, 'public', 'Session'))).toEqual(['Session_pkey', 'Session_sessionToken_key']);
    expect(Object.keys(await constraintsOf(db, 'public', 'Session'))).toEqual(['Session_pkey', 'Session_userId_fkey']);
    expect((await db.query(`SELECT pg_get_serial_sequence('"Session"', 'id') AS seq, (SELECT count(*)::int FROM "Session") AS n`)).rows[0]).toEqual({
      seq: 'public."Session_id_seq"',
      n: 0,
    });
  });

  it('a serial id turned into text, then DROP SEQUENCE of its sequence', async () => {
    const kinds = await apply(
      `CREATE TABLE "Counter" (id serial PRIMARY KEY, n int);
       INSERT INTO "Counter" (n) SELECT g FROM generate_series(1, 20) g;`,
      `ALTER TABLE "Counter" ALTER COLUMN "id" DROP DEFAULT,
       ALTER COLUMN "id" SET DATA TYPE TEXT;
       DROP SEQUENCE "Counter_id_seq";`,
    );
    expect(kinds).toEqual(['alter_column', 'alter_column', 'sql']);
    const db = await pg.client();
    expect((await columnsOf(db, 'public', 'Counter')).find((c) => c.name === 'id')).toEqual({ name: 'id', type: 'text', nullable: false, default: null });
    expect((await db.query(`SELECT to_regclass('public."Counter_id_seq"') AS seq, (SELECT string_agg(id, ',' ORDER BY n) FROM "Counter" WHERE n <= 3) AS ids`)).rows[0]).toEqual({
      seq: null,
      ids: '1,2,3',
    });
  });
});
