// The PostgreSQL fixtures of the source conformance suite: a database with several schemas, the types
// that trip dumps up (jsonb, arrays, bytea, numeric, timestamptz, enums, domains, ranges), sequences at
// a non-initial value, views, functions, a trigger, indexes and constraints of every common kind, roles
// that own and are granted things, a row security policy and a large object; and its fingerprint: a
// checksum of every table's content plus the definition of every schema object.

import type { PostgresServer } from '../harness/postgres.js';

/** Roles the fixtures use: one owns objects, one is granted read access. Created once per server. */
export const FIXTURE_ROLES = ['fixture_owner', 'fixture_reader'];

const ROLES_SQL = FIXTURE_ROLES.map(
  (role) => `DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${role}') THEN CREATE ROLE ${role} NOLOGIN; END IF;
  END $$;`,
).join('\n');

export const FIXTURE_SQL = `
CREATE SCHEMA sales AUTHORIZATION fixture_owner;
CREATE SCHEMA audit;
CREATE TYPE sales.status AS ENUM ('new', 'paid', 'shipped', 'cancelled');
CREATE DOMAIN sales.money_amount AS numeric(14, 2) CHECK (VALUE >= 0);
CREATE TYPE sales.address AS (street text, city text, zip text);

CREATE TABLE sales.customers (
  id bigserial PRIMARY KEY,
  email text NOT NULL UNIQUE,
  profile jsonb,
  tags text[],
  home sales.address,
  created_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT email_has_at CHECK (position('@' in email) > 1)
);
CREATE TABLE sales.orders (
  id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  customer_id bigint NOT NULL REFERENCES sales.customers (id) ON DELETE CASCADE,
  total sales.money_amount NOT NULL,
  status sales.status NOT NULL DEFAULT 'new',
  placed_at timestamptz,
  lines integer[][],
  payload bytea,
  exact numeric,
  note text
);
CREATE INDEX orders_by_customer ON sales.orders (customer_id, placed_at DESC);
CREATE INDEX customers_profile ON sales.customers USING gin (profile jsonb_path_ops);
CREATE UNIQUE INDEX orders_cancelled_note ON sales.orders (note) WHERE status = 'cancelled';
CREATE INDEX customers_email_lower ON sales.customers (lower(email));
ALTER TABLE sales.orders OWNER TO fixture_owner;
ALTER TABLE sales.customers OWNER TO fixture_owner;

CREATE TABLE audit.bookings (
  room int NOT NULL,
  during tstzrange NOT NULL,
  EXCLUDE USING gist (during WITH &&)
);
CREATE TABLE audit.events (
  id bigint PRIMARY KEY,
  at timestamptz,
  kind text NOT NULL,
  body jsonb,
  amount numeric,
  span interval,
  ref uuid,
  peer inet
);
CREATE SEQUENCE audit.ticket_seq START 1000 INCREMENT 7;
SELECT nextval('audit.ticket_seq') FROM generate_series(1, 5);

CREATE FUNCTION audit.stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.note := coalesce(NEW.note, 'ticket ' || nextval('audit.ticket_seq'));
  RETURN NEW;
END $$;
CREATE TRIGGER orders_stamp BEFORE INSERT ON sales.orders FOR EACH ROW EXECUTE FUNCTION audit.stamp();
CREATE FUNCTION sales.customer_total(bigint) RETURNS numeric LANGUAGE sql STABLE
  AS $$ SELECT coalesce(sum(total), 0) FROM sales.orders WHERE customer_id = $1 $$;

INSERT INTO sales.customers (email, profile, tags, home, created_at)
SELECT 'user' || i || '@example.com',
       jsonb_build_object('i', i, 'vip', i % 7 = 0, 'nested', jsonb_build_object('k', repeat('x', i % 13), 'arr', jsonb_build_array(i, null, 'é"\\\\'))),
       CASE WHEN i % 5 = 0 THEN NULL ELSE ARRAY['t' || (i % 3), NULL, 'quote''s', E'tab\\there'] END,
       ROW('Street ' || i, CASE WHEN i % 2 = 0 THEN 'Zürich' ELSE 'Łódź' END, lpad(i::text, 5, '0'))::sales.address,
       timestamptz '2024-01-01 00:00:00+00' + i * interval '37 minutes'
FROM generate_series(1, 4000) AS i;

INSERT INTO sales.orders (customer_id, total, status, placed_at, lines, payload, exact, note)
SELECT 1 + (i * 7919) % 4000,
       ((i * 104729) % 100000) / 100.0,
       (ARRAY['new', 'paid', 'shipped', 'cancelled'])[1 + i % 4]::sales.status,
       CASE WHEN i % 97 = 0 THEN 'infinity'::timestamptz ELSE timestamptz '2024-06-01 12:00:00+02' + i * interval '1 minute 7 seconds' END,
       ARRAY[[i, i + 1], [i * 2, NULL]],
       CASE WHEN i % 3 = 0 THEN NULL ELSE decode(md5(i::text) || md5((i + 1)::text), 'hex') || '\\x00ff0a5c'::bytea END,
       CASE WHEN i % 101 = 0 THEN 'NaN'::numeric ELSE (i::numeric * 3.14159265358979323846264338327950288) ^ 3 END,
       CASE WHEN i % 4 = 0 THEN NULL ELSE E'line one\\nline two \\\\ back\\tslash ' || i END
FROM generate_series(1, 20000) AS i;

INSERT INTO audit.events (id, at, kind, body, amount, span, ref, peer)
SELECT i, timestamptz '2025-03-01 00:00:00+00' + i * interval '1 second',
       (ARRAY['login', 'logout', 'purchase'])[1 + i % 3],
       jsonb_build_object('seq', i, 'ok', i % 2 = 0, 'score', i * 1.5),
       round((i * 0.001)::numeric, 3), i * interval '3 seconds',
       md5(i::text)::uuid, ('10.0.' || (i % 256) || '.' || (i % 200))::inet
FROM generate_series(1, 6000) AS i;
INSERT INTO audit.bookings SELECT i % 10, tstzrange(timestamptz '2025-01-01' + i * interval '1 hour', timestamptz '2025-01-01' + (i + 1) * interval '1 hour')
FROM generate_series(1, 200) AS i;

CREATE VIEW sales.customer_totals AS
  SELECT c.id, c.email, sales.customer_total(c.id) AS total FROM sales.customers c;
CREATE MATERIALIZED VIEW sales.status_counts AS
  SELECT status, count(*) AS n, sum(total) AS total FROM sales.orders GROUP BY status;
COMMENT ON TABLE sales.orders IS 'orders, one row per order';
COMMENT ON COLUMN sales.customers.profile IS 'free-form profile';

GRANT USAGE ON SCHEMA sales TO fixture_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA sales TO fixture_reader;
ALTER TABLE audit.events ENABLE ROW LEVEL SECURITY;
CREATE POLICY readers_see_logins ON audit.events FOR SELECT TO fixture_reader USING (kind = 'login');
SELECT lo_from_bytea(0, convert_to(repeat('large object ', 500), 'UTF8'));
ANALYZE;
`;

export const CHANGE_SQL = `
UPDATE sales.orders SET status = 'shipped', note = 'changed ' || id WHERE id % 50 = 0;
DELETE FROM sales.customers WHERE id % 400 = 0;
INSERT INTO sales.customers (email, profile, tags)
  SELECT 'late' || i || '@example.com', jsonb_build_object('late', i), ARRAY['late'] FROM generate_series(1, 300) AS i;
INSERT INTO sales.orders (customer_id, total, placed_at)
  SELECT (SELECT max(id) FROM sales.customers), i, now() FROM generate_series(1, 200) AS i;
INSERT INTO audit.events (id, at, kind) SELECT 100000 + i, now(), 'purchase' FROM generate_series(1, 100) AS i;
REFRESH MATERIALIZED VIEW sales.status_counts;
`;

const templates = new WeakMap<PostgresServer, Promise<void>>();

/**
 * Create database `name` holding the fixtures: the first call on a server fills a template database
 * (and creates the fixture roles), every call clones it, which takes a fraction of the time.
 */
export async function createFixtureDatabase(pg: PostgresServer, name: string): Promise<void> {
  let template = templates.get(pg);
  if (!template) {
    template = (async () => {
      await pg.psql(`${ROLES_SQL}\nCREATE DATABASE fixture_template;`);
      await pg.psql(FIXTURE_SQL, 'fixture_template');
      // A template: not listed as a database of the source, and cloned by CREATE DATABASE ... TEMPLATE.
      await pg.psql('ALTER DATABASE fixture_template IS_TEMPLATE true');
    })();
    templates.set(pg, template);
  }
  await template;
  await pg.psql(`CREATE DATABASE ${name} TEMPLATE fixture_template`);
}

const USER_SCHEMAS = `n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_to%' AND n.nspname NOT LIKE 'pg\\_temp%'`;

/** The schema objects: every relation, index, constraint, function, view, trigger, type, policy and comment. */
const OBJECTS_SQL = `
SELECT json_object_agg(k, v ORDER BY k) FROM (
  SELECT 'relation ' || n.nspname || '.' || c.relname,
         c.relkind::text || ' owner=' || pg_get_userbyid(c.relowner) || ' acl=' || coalesce(c.relacl::text, '-')
           || ' rls=' || c.relrowsecurity || ' comment=' || coalesce(obj_description(c.oid, 'pg_class'), '-')
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ${USER_SCHEMAS}
  UNION ALL SELECT 'schema ' || n.nspname, pg_get_userbyid(n.nspowner) || ' acl=' || coalesce(n.nspacl::text, '-')
    FROM pg_namespace n WHERE ${USER_SCHEMAS}
  UNION ALL SELECT 'index ' || schemaname || '.' || indexname, indexdef FROM pg_indexes i
    JOIN pg_namespace n ON n.nspname = i.schemaname WHERE ${USER_SCHEMAS}
  UNION ALL SELECT 'constraint ' || coalesce(nullif(co.conrelid, 0)::regclass::text, co.contypid::regtype::text) || '.' || co.conname, pg_get_constraintdef(co.oid)
    FROM pg_constraint co JOIN pg_namespace n ON n.oid = co.connamespace WHERE ${USER_SCHEMAS}
  UNION ALL SELECT 'function ' || p.oid::regprocedure, pg_get_functiondef(p.oid) || ' owner=' || pg_get_userbyid(p.proowner)
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE ${USER_SCHEMAS}
  UNION ALL SELECT 'view ' || c.oid::regclass, pg_get_viewdef(c.oid)
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ${USER_SCHEMAS} AND c.relkind IN ('v', 'm')
  UNION ALL SELECT 'trigger ' || tgrelid::regclass || '.' || tgname, pg_get_triggerdef(t.oid) FROM pg_trigger t WHERE NOT tgisinternal
  UNION ALL SELECT 'type ' || t.oid::regtype, t.typtype::text || ' ' || coalesce((SELECT string_agg(enumlabel, ',' ORDER BY enumsortorder) FROM pg_enum WHERE enumtypid = t.oid), '')
    FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE ${USER_SCHEMAS} AND t.typtype IN ('e', 'd')
  UNION ALL SELECT 'policy ' || polrelid::regclass || '.' || polname, pg_get_expr(polqual, polrelid) || ' to=' || array_to_string(ARRAY(SELECT rolname FROM pg_roles WHERE oid = ANY (polroles) ORDER BY 1), ',')
    FROM pg_policy
  UNION ALL SELECT 'column comment ' || c.oid::regclass || '.' || a.attname, col_description(c.oid, a.attnum)
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE ${USER_SCHEMAS} AND col_description(c.oid, a.attnum) IS NOT NULL
  UNION ALL SELECT 'large objects', count(*)::text || ' ' || coalesce(md5(string_agg(lo_get(oid)::text, ',' ORDER BY lo_get(oid)::text)), '-')
    FROM pg_largeobject_metadata
  UNION ALL SELECT 'database', pg_encoding_to_char(encoding) || ' ' || datcollate || ' owner=' || pg_get_userbyid(datdba)
    FROM pg_database WHERE datname = current_database()
) AS objects (k, v)`;

const TABLES_SQL = `
SELECT json_agg(json_build_object('name', quote_ident(n.nspname) || '.' || quote_ident(c.relname), 'kind', c.relkind) ORDER BY 1)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE ${USER_SCHEMAS} AND c.relkind IN ('r', 'p', 'm', 'S')`;

/** A checksum per table (row count + md5 of the sorted rows), each sequence's state, and the schema objects. */
export async function fingerprint(pg: PostgresServer, database: string): Promise<Record<string, string>> {
  const tables = JSON.parse(await pg.psql(TABLES_SQL, database)) as { name: string; kind: string }[];
  const parts = tables.map(({ name, kind }) =>
    kind === 'S'
      ? `'sequence ${name}', (SELECT last_value || ' called=' || is_called FROM ${name})`
      : `'table ${name}', (SELECT count(*) || ' ' || coalesce(md5(string_agg(x::text, E'\\n' ORDER BY x::text)), '-') FROM ${name} AS x)`,
  );
  // json_build_object takes at most 100 arguments: one query per 40 tables.
  const result: Record<string, string> = {};
  for (let i = 0; i < parts.length; i += 40) {
    Object.assign(
      result,
      JSON.parse(await pg.psql(`SELECT json_build_object(${parts.slice(i, i + 40).join(', ')})`, database)),
    );
  }
  Object.assign(result, JSON.parse(await pg.psql(OBJECTS_SQL, database)));
  return result;
}
