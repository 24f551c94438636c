-- tenantry, migration 7: the service's own secrets, starting with the key of its entity tags.
--
-- An issue's ETag is "<version>.<mac>", the mac an HMAC-SHA256 over (organization, issue,
-- version) under one key (see the service's conditional-request code). Made from the row's version
-- alone, organization B's issue 1 had the same tag as organization A's issue 1, so a cache
-- that revalidated A's copy with B's identity was told "304, still current". The key makes
-- tags of different organizations or issues unequal, and a forged tag detectable.
--
-- One key per database, made here once: every instance and every restart read it at start
-- and so produce the same tags (ETAG_KEY may override it, e.g. to share tags across
-- databases). The schema is readable only by its owner, the role that migrates and
-- that the service reads the key as: not by tenantry_api, not by tenantry_dba.

create schema secrets;
comment on schema secrets is
  'The service''s own secrets (no tenant data): readable only by the schema owner, which the '
  'service connects as at start. No other role has USAGE: tenantry_api and tenantry_dba get '
  'permission denied (42501).';
revoke all on schema secrets from public;

create table secrets.keys (
  name       text primary key check (name ~ '^[a-z_]{1,32}$'),
  key        bytea not null check (pg_catalog.length(key) = 32),
  created_at timestamptz not null default pg_catalog.now()
);
comment on table secrets.keys is
  'Keys the service reads at start, one row per purpose. Rotating one: update its key (every '
  'outstanding tag of that purpose stops matching once the instances restart).';
comment on column secrets.keys.name is
  'What the key is for: etag (the HMAC key of issue entity tags).';
comment on column secrets.keys.key is
  '32 random bytes.';
comment on column secrets.keys.created_at is
  'When the key was made.';
revoke all on secrets.keys from public;

-- 32 bytes from PostgreSQL's strong random source: gen_random_uuid() draws 122 random bits
-- from pg_strong_random(); sha256 of three of them spreads 366 bits over the 256 kept.
insert into secrets.keys (name, key)
values ('etag', pg_catalog.sha256(
  pg_catalog.uuid_send(pg_catalog.gen_random_uuid())
  || pg_catalog.uuid_send(pg_catalog.gen_random_uuid())
  || pg_catalog.uuid_send(pg_catalog.gen_random_uuid())));
