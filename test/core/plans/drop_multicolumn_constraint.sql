
-- ==== start ====
-- add shadow column posts._tandem_new_user_id for user_id [#0; sql; lock public.posts; operation 0]
ALTER TABLE "public"."posts" ADD COLUMN "_tandem_new_user_id" bigint;
-- install sync trigger on posts [#1; sql; lock public.posts; operation 0]
CREATE OR REPLACE FUNCTION "tandem"."sync_public_posts"() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, "public", pg_temp
AS $tandem$
#variable_conflict use_column
DECLARE
  -- The writer is the new version when its first schema is one the trigger names (see syncTriggerSql).
  _tandem_from_new boolean := COALESCE(pg_catalog.current_setting('tandem.writer_schema', true) = ANY (TG_ARGV), false);
  _tandem_direction text;
BEGIN
  -- posts.user_id: user_id <-> _tandem_new_user_id
  IF TG_OP = 'UPDATE' AND NEW."_tandem_new_user_id" IS DISTINCT FROM OLD."_tandem_new_user_id" AND NOT NEW."user_id" IS DISTINCT FROM OLD."user_id" THEN
    _tandem_direction := 'down';
  ELSIF TG_OP = 'UPDATE' AND NEW."user_id" IS DISTINCT FROM OLD."user_id" AND NOT NEW."_tandem_new_user_id" IS DISTINCT FROM OLD."_tandem_new_user_id" THEN
    _tandem_direction := 'up';
  ELSIF _tandem_from_new THEN
    _tandem_direction := 'down';
  ELSE
    _tandem_direction := 'up';
  END IF;
  IF _tandem_direction = 'up' THEN
    DECLARE
      "user_id" "public"."posts"."user_id"%TYPE := NEW."user_id";
    BEGIN
      NEW."_tandem_new_user_id" := CAST((user_id) AS bigint);
    END;
  END IF;
  IF _tandem_direction = 'down' THEN
    DECLARE
      "user_id" "public"."posts"."_tandem_new_user_id"%TYPE := NEW."_tandem_new_user_id";
    BEGIN
      NEW."user_id" := CAST((user_id) AS bigint);
    END;
  END IF;
  RETURN NEW;
END
$tandem$;
CREATE OR REPLACE TRIGGER "_tandem_sync"
  BEFORE INSERT OR UPDATE ON "public"."posts"
  FOR EACH ROW WHEN (pg_catalog.current_setting('tandem.backfill', true) IS DISTINCT FROM 'on' AND pg_catalog.set_config('tandem.writer_schema', COALESCE(pg_catalog.current_schema(), ''), true) IS NOT NULL)
  EXECUTE FUNCTION "tandem"."sync_public_posts"('public_02_change');
-- add NOT NULL check on _tandem_new_user_id NOT VALID [#2; sql; lock public.posts; operation 0]
ALTER TABLE "public"."posts" ADD CONSTRAINT "_tandem_nn_posts_user_id" CHECK ("_tandem_new_user_id" IS NOT NULL) NOT VALID;
-- backfill posts [#3; backfill; operation 0]
--   table posts, touch _tandem_new_user_id, SET "_tandem_new_user_id" = CAST(("user_id") AS bigint)
-- create version schema public_02_change [#4; sql]
CREATE SCHEMA "public_02_change";
INSERT INTO "tandem"."version_schemas" (version_schema, schema_name, migration)
     VALUES ('public_02_change', 'public', '02_change')
     ON CONFLICT (version_schema) DO UPDATE SET schema_name = EXCLUDED.schema_name, migration = EXCLUDED.migration, created_at = now();
CREATE OR REPLACE VIEW "public_02_change"."posts" WITH (security_invoker = true) AS SELECT "id", "_tandem_new_user_id" AS "user_id", "title" FROM "public"."posts";
CREATE OR REPLACE VIEW "public_02_change"."users" WITH (security_invoker = true) AS SELECT "id", "name", "email", "age" FROM "public"."users";

-- ==== complete ====
-- validate constraint _tandem_nn_posts_user_id [sql; lock public.posts; operation 0]
ALTER TABLE "public"."posts" VALIDATE CONSTRAINT "_tandem_nn_posts_user_id";
-- rehearse the rest of complete (rolled back) [sql]
DO $tandem_rehearsal$ BEGIN
  BEGIN
    EXECUTE 'DO $tandem$
DECLARE
  _view text;
  _others text;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = ''public_01_init'') THEN
    DELETE FROM "tandem"."version_schemas" WHERE version_schema = ''public_01_init'';
    RETURN;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM "tandem"."version_schemas" WHERE version_schema = ''public_01_init'') THEN
    RAISE EXCEPTION ''schema % was not created by tandem: it is not dropped'', ''"public_01_init"''
      USING ERRCODE = ''42501'', HINT = ''tandem drops only the version schemas it created itself'';
  END IF;
  FOR _view IN SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = ''public_01_init'' AND c.relkind = ''v'' ORDER BY c.relname LOOP
    EXECUTE pg_catalog.format(''DROP VIEW %I.%I'', ''public_01_init'', _view);
  END LOOP;
  SELECT pg_catalog.string_agg(what, '', '' ORDER BY what) INTO _others FROM (
    SELECT pg_catalog.format(''%s %I'', CASE c.relkind WHEN ''r'' THEN ''table'' WHEN ''p'' THEN ''table'' WHEN ''S'' THEN ''sequence''
             WHEN ''m'' THEN ''materialized view'' WHEN ''f'' THEN ''foreign table'' WHEN ''i'' THEN ''index'' WHEN ''c'' THEN ''type'' ELSE ''relation'' END, c.relname) AS what
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = ''public_01_init''
    UNION ALL
    SELECT pg_catalog.format(''function %I'', p.proname) FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname = ''public_01_init''
    UNION ALL
    SELECT pg_catalog.format(''type %I'', t.typname) FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
     WHERE n.nspname = ''public_01_init'' AND t.typrelid = 0 AND t.typelem = 0
  ) AS found;
  IF _others IS NOT NULL THEN
    RAISE EXCEPTION ''version schema % holds objects tandem did not put there: %'', ''"public_01_init"'', _others
      USING ERRCODE = ''2BP01'', HINT = ''move them to another schema (ALTER … SET SCHEMA) or drop them, then run the command again'';
  END IF;
  EXECUTE ''DROP SCHEMA "public_01_init"'';
  DELETE FROM "tandem"."version_schemas" WHERE version_schema = ''public_01_init'';
END
$tandem$';
    EXECUTE 'DROP TRIGGER IF EXISTS "_tandem_sync" ON "public"."posts"';
    EXECUTE 'DROP TRIGGER IF EXISTS "_tandem_sync_new" ON "public"."posts"';
    EXECUTE 'DROP FUNCTION IF EXISTS "tandem"."sync_public_posts"()';
    EXECUTE 'ALTER TABLE "public"."posts" ALTER COLUMN "_tandem_new_user_id" SET NOT NULL';
    EXECUTE 'ALTER TABLE "public"."posts" DROP CONSTRAINT "_tandem_nn_posts_user_id"';
    EXECUTE 'ALTER TABLE "public"."posts" DROP COLUMN "user_id"';
    EXECUTE 'ALTER TABLE "public"."posts" RENAME COLUMN "_tandem_new_user_id" TO "user_id"';
    RAISE EXCEPTION USING ERRCODE = 'T0R01';
  EXCEPTION WHEN SQLSTATE 'T0R01' THEN
    NULL;
  END;
END $tandem_rehearsal$;
-- drop the previous version schema public_01_init [sql; destructive]
DO $tandem$
DECLARE
  _view text;
  _others text;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = 'public_01_init') THEN
    DELETE FROM "tandem"."version_schemas" WHERE version_schema = 'public_01_init';
    RETURN;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM "tandem"."version_schemas" WHERE version_schema = 'public_01_init') THEN
    RAISE EXCEPTION 'schema % was not created by tandem: it is not dropped', '"public_01_init"'
      USING ERRCODE = '42501', HINT = 'tandem drops only the version schemas it created itself';
  END IF;
  FOR _view IN SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = 'public_01_init' AND c.relkind = 'v' ORDER BY c.relname LOOP
    EXECUTE pg_catalog.format('DROP VIEW %I.%I', 'public_01_init', _view);
  END LOOP;
  SELECT pg_catalog.string_agg(what, ', ' ORDER BY what) INTO _others FROM (
    SELECT pg_catalog.format('%s %I', CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table' WHEN 'S' THEN 'sequence'
             WHEN 'm' THEN 'materialized view' WHEN 'f' THEN 'foreign table' WHEN 'i' THEN 'index' WHEN 'c' THEN 'type' ELSE 'relation' END, c.relname) AS what
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = 'public_01_init'
    UNION ALL
    SELECT pg_catalog.format('function %I', p.proname) FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname = 'public_01_init'
    UNION ALL
    SELECT pg_catalog.format('type %I', t.typname) FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
     WHERE n.nspname = 'public_01_init' AND t.typrelid = 0 AND t.typelem = 0
  ) AS found;
  IF _others IS NOT NULL THEN
    RAISE EXCEPTION 'version schema % holds objects tandem did not put there: %', '"public_01_init"', _others
      USING ERRCODE = '2BP01', HINT = 'move them to another schema (ALTER … SET SCHEMA) or drop them, then run the command again';
  END IF;
  EXECUTE 'DROP SCHEMA "public_01_init"';
  DELETE FROM "tandem"."version_schemas" WHERE version_schema = 'public_01_init';
END
$tandem$;
-- wait for the proxies to retire public_01_init [await_proxies]
-- swap the shadow columns of posts into place (with the sync trigger on posts) [sql; lock public.posts; destructive; operation 0]
DROP TRIGGER IF EXISTS "_tandem_sync" ON "public"."posts";
DROP TRIGGER IF EXISTS "_tandem_sync_new" ON "public"."posts";
DROP FUNCTION IF EXISTS "tandem"."sync_public_posts"();
ALTER TABLE "public"."posts" ALTER COLUMN "_tandem_new_user_id" SET NOT NULL;
ALTER TABLE "public"."posts" DROP CONSTRAINT "_tandem_nn_posts_user_id";
ALTER TABLE "public"."posts" DROP COLUMN "user_id";
-- rename column posts._tandem_new_user_id to user_id [sql; lock public.posts]
ALTER TABLE "public"."posts" RENAME COLUMN "_tandem_new_user_id" TO "user_id";

-- ==== rollback ====
-- drop version schema public_02_change [sql; undoes 4]
DO $tandem$
DECLARE
  _view text;
  _others text;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = 'public_02_change') THEN
    DELETE FROM "tandem"."version_schemas" WHERE version_schema = 'public_02_change';
    RETURN;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM "tandem"."version_schemas" WHERE version_schema = 'public_02_change') THEN
    RAISE EXCEPTION 'schema % was not created by tandem: it is not dropped', '"public_02_change"'
      USING ERRCODE = '42501', HINT = 'tandem drops only the version schemas it created itself';
  END IF;
  FOR _view IN SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = 'public_02_change' AND c.relkind = 'v' ORDER BY c.relname LOOP
    EXECUTE pg_catalog.format('DROP VIEW %I.%I', 'public_02_change', _view);
  END LOOP;
  SELECT pg_catalog.string_agg(what, ', ' ORDER BY what) INTO _others FROM (
    SELECT pg_catalog.format('%s %I', CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table' WHEN 'S' THEN 'sequence'
             WHEN 'm' THEN 'materialized view' WHEN 'f' THEN 'foreign table' WHEN 'i' THEN 'index' WHEN 'c' THEN 'type' ELSE 'relation' END, c.relname) AS what
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = 'public_02_change'
    UNION ALL
    SELECT pg_catalog.format('function %I', p.proname) FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname = 'public_02_change'
    UNION ALL
    SELECT pg_catalog.format('type %I', t.typname) FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
     WHERE n.nspname = 'public_02_change' AND t.typrelid = 0 AND t.typelem = 0
  ) AS found;
  IF _others IS NOT NULL THEN
    RAISE EXCEPTION 'version schema % holds objects tandem did not put there: %', '"public_02_change"', _others
      USING ERRCODE = '2BP01', HINT = 'move them to another schema (ALTER … SET SCHEMA) or drop them, then run the command again';
  END IF;
  EXECUTE 'DROP SCHEMA "public_02_change"';
  DELETE FROM "tandem"."version_schemas" WHERE version_schema = 'public_02_change';
END
$tandem$;
-- drop sync trigger on posts [sql; lock public.posts; undoes 1]
DROP TRIGGER IF EXISTS "_tandem_sync" ON "public"."posts";
DROP TRIGGER IF EXISTS "_tandem_sync_new" ON "public"."posts";
DROP FUNCTION IF EXISTS "tandem"."sync_public_posts"();
-- drop shadow column posts._tandem_new_user_id [sql; lock public.posts; undoes 0,1,2; operation 0]
ALTER TABLE "public"."posts" DROP COLUMN IF EXISTS "_tandem_new_user_id";
