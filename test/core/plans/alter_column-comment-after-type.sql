
-- ==== start ====
-- add shadow column users._tandem_new_age for age [#0; sql; lock public.users; operation 0]
ALTER TABLE "public"."users" ADD COLUMN "_tandem_new_age" bigint;
COMMENT ON COLUMN "public"."users"."_tandem_new_age" IS 'in years';
-- install sync trigger on users [#1; sql; lock public.users; operation 0]
CREATE OR REPLACE FUNCTION "tandem"."sync_public_users"() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, "public", pg_temp
AS $tandem$
#variable_conflict use_column
DECLARE
  -- The writer is the new version when its first schema is one the trigger names (see syncTriggerSql).
  _tandem_from_new boolean := COALESCE(pg_catalog.current_setting('tandem.writer_schema', true) = ANY (TG_ARGV), false);
  _tandem_direction text;
BEGIN
  -- users.age: age <-> _tandem_new_age
  IF TG_OP = 'UPDATE' AND NEW."_tandem_new_age" IS DISTINCT FROM OLD."_tandem_new_age" AND NOT NEW."age" IS DISTINCT FROM OLD."age" THEN
    _tandem_direction := 'down';
  ELSIF TG_OP = 'UPDATE' AND NEW."age" IS DISTINCT FROM OLD."age" AND NOT NEW."_tandem_new_age" IS DISTINCT FROM OLD."_tandem_new_age" THEN
    _tandem_direction := 'up';
  ELSIF _tandem_from_new THEN
    _tandem_direction := 'down';
  ELSE
    _tandem_direction := 'up';
  END IF;
  IF _tandem_direction = 'up' THEN
    DECLARE
      "age" "public"."users"."age"%TYPE := NEW."age";
    BEGIN
      NEW."_tandem_new_age" := CAST((age) AS bigint);
    END;
  END IF;
  IF _tandem_direction = 'down' THEN
    DECLARE
      "age" "public"."users"."_tandem_new_age"%TYPE := NEW."_tandem_new_age";
    BEGIN
      NEW."age" := CAST((age::integer) AS integer);
    END;
  END IF;
  RETURN NEW;
END
$tandem$;
CREATE OR REPLACE TRIGGER "_tandem_sync"
  BEFORE INSERT OR UPDATE ON "public"."users"
  FOR EACH ROW WHEN (pg_catalog.current_setting('tandem.backfill', true) IS DISTINCT FROM 'on' AND pg_catalog.set_config('tandem.writer_schema', COALESCE(pg_catalog.current_schema(), ''), true) IS NOT NULL)
  EXECUTE FUNCTION "tandem"."sync_public_users"('public_02_change');
-- recreate constraint users_age_check on the shadow columns NOT VALID [#2; sql; lock public.users; operation 0]
ALTER TABLE "public"."users" ADD CONSTRAINT "_tandem_c_users_age_check" CHECK (("_tandem_new_age" > 0)) NOT VALID;
-- backfill users [#3; backfill; operation 0]
--   table users, touch _tandem_new_age, SET "_tandem_new_age" = CAST(("age") AS bigint)
-- create version schema public_02_change [#4; sql]
CREATE SCHEMA "public_02_change";
INSERT INTO "tandem"."version_schemas" (version_schema, schema_name, migration)
     VALUES ('public_02_change', 'public', '02_change')
     ON CONFLICT (version_schema) DO UPDATE SET schema_name = EXCLUDED.schema_name, migration = EXCLUDED.migration, created_at = now();
CREATE OR REPLACE VIEW "public_02_change"."posts" WITH (security_invoker = true) AS SELECT "id", "user_id", "title" FROM "public"."posts";
CREATE OR REPLACE VIEW "public_02_change"."users" WITH (security_invoker = true) AS SELECT "id", "name", "email", "_tandem_new_age" AS "age" FROM "public"."users";

-- ==== complete ====
-- validate constraint _tandem_c_users_age_check [sql; lock public.users; operation 0]
ALTER TABLE "public"."users" VALIDATE CONSTRAINT "_tandem_c_users_age_check";
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
    EXECUTE 'DROP TRIGGER IF EXISTS "_tandem_sync" ON "public"."users"';
    EXECUTE 'DROP TRIGGER IF EXISTS "_tandem_sync_new" ON "public"."users"';
    EXECUTE 'DROP FUNCTION IF EXISTS "tandem"."sync_public_users"()';
    EXECUTE 'ALTER TABLE "public"."users" DROP COLUMN "age"';
    EXECUTE 'ALTER TABLE "public"."users" RENAME COLUMN "_tandem_new_age" TO "age"';
    EXECUTE 'ALTER TABLE "public"."users" RENAME CONSTRAINT "_tandem_c_users_age_check" TO "users_age_check"';
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
-- swap the shadow columns of users into place (with the sync trigger on users) [sql; lock public.users; destructive; operation 0]
DROP TRIGGER IF EXISTS "_tandem_sync" ON "public"."users";
DROP TRIGGER IF EXISTS "_tandem_sync_new" ON "public"."users";
DROP FUNCTION IF EXISTS "tandem"."sync_public_users"();
ALTER TABLE "public"."users" DROP COLUMN "age";
-- rename column users._tandem_new_age to age [sql; lock public.users]
ALTER TABLE "public"."users" RENAME COLUMN "_tandem_new_age" TO "age";
-- rename constraint _tandem_c_users_age_check to users_age_check [sql; lock public.users]
ALTER TABLE "public"."users" RENAME CONSTRAINT "_tandem_c_users_age_check" TO "users_age_check";

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
-- drop sync trigger on users [sql; lock public.users; undoes 1]
DROP TRIGGER IF EXISTS "_tandem_sync" ON "public"."users";
DROP TRIGGER IF EXISTS "_tandem_sync_new" ON "public"."users";
DROP FUNCTION IF EXISTS "tandem"."sync_public_users"();
-- drop shadow column users._tandem_new_age [sql; lock public.users; undoes 0,1,2; operation 0]
ALTER TABLE "public"."users" DROP COLUMN IF EXISTS "_tandem_new_age";
