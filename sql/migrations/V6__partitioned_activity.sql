-- tenantry, migration 6: app.activity_logs partitioned by month, so it does not grow
-- forever in one piece.
--
-- - Range partitions on created_at, one per calendar month in UTC, named
--   app.activity_logs_yYYYYmMM. Queries bounded in time (the feed's since/until, the dba
--   view of the last 24 hours) read only the months they ask for; old months can be
--   dropped whole, without a DELETE or any bloat.
-- - The primary key must hold the partition key: (organization_id, id, created_at),
--   still led by organization_id (and so still a Citus key). Entry numbers stay unique
--   per organization because app.organization_counters hands them out, as before.
-- - Partitions are made ahead of time by app.create_activity_partitions(), which the
--   service runs as the schema owner at start and every hour (the API role owns nothing
--   and so cannot create tables; see src/db/maintenance.rs). Retention
--   (ACTIVITY_RETENTION_MONTHS, off by default) detaches and drops whole months through
--   app.drop_activity_partitions_before(). Both run as app.maintain_activity_partitions().
-- - Every partition is secured like its parent, because a partition can be queried by
--   name: row-level security enabled and forced, copies of the parent's policies, the
--   parent's grants (the API role: SELECT and INSERT only, so entries stay immutable) and
--   its comments. app.secure_activity_partition() does it for every new partition.
--
-- The conversion below copies the existing entries into the new table once (within this
-- migration's transaction): on a large log, run it at a quiet time.

------------------------------------------------------------------------------------------
-- Partition helpers (owner only: none is granted to the API role).
------------------------------------------------------------------------------------------
create function app.activity_partition_name(month timestamp) returns text
  language sql immutable strict parallel safe
  as $$ select 'activity_logs_y' || pg_catalog.to_char(month, 'YYYY"m"MM') $$;
comment on function app.activity_partition_name(timestamp) is
  'The name of the activity partition holding the UTC month that starts at month, e.g. activity_logs_y2026m11.';

create function app.copy_table_security(source regclass, target regclass) returns void
  language plpgsql volatile
  set search_path = pg_catalog, pg_temp
  as $$
declare
  policy    record;
  privilege record;
begin
  execute format('alter table %s enable row level security, force row level security', target);

  -- The source's policies, as they are now (including their comments).
  for policy in
    select p.polname,
           case p.polcmd when 'r' then 'select' when 'a' then 'insert' when 'w' then 'update'
                         when 'd' then 'delete' else 'all' end as command,
           case when p.polpermissive then 'permissive' else 'restrictive' end as kind,
           (select string_agg(case when r = 0 then 'public' else quote_ident(a.rolname) end, ', ')
              from unnest(p.polroles) r left join pg_roles a on a.oid = r) as roles,
           pg_get_expr(p.polqual, p.polrelid) as qual,
           pg_get_expr(p.polwithcheck, p.polrelid) as checked,
           obj_description(p.oid, 'pg_policy') as description
    from pg_policy p
    where p.polrelid = source
  loop
    if not exists (select from pg_policy q where q.polrelid = target and q.polname = policy.polname) then
      execute format('create policy %I on %s as %s for %s to %s', policy.polname, target, policy.kind,
                     policy.command, policy.roles)
           || coalesce(' using (' || policy.qual || ')', '')
           || coalesce(' with check (' || policy.checked || ')', '');
      execute format('comment on policy %I on %s is %L', policy.polname, target, policy.description);
    end if;
  end loop;

  -- Exactly the source's grants.
  execute format('revoke all on %s from public', target);
  for privilege in
    select case when x.grantee = 0 then 'public' else quote_ident(a.rolname) end as grantee, x.privilege_type
    from pg_class c, aclexplode(c.relacl) x left join pg_roles a on a.oid = x.grantee
    where c.oid = source and x.grantee <> c.relowner
  loop
    execute format('grant %s on %s to %s', privilege.privilege_type, target, privilege.grantee);
  end loop;
end
$$;
comment on function app.copy_table_security(regclass, regclass) is
  'Makes target as secure as source: row-level security enabled and forced, the policies of '
  'source that target lacks (with their comments), and exactly the grants of source. Used for '
  'every activity partition and for the conversion to a partitioned table (migration 6).';

create function app.secure_activity_partition(partition regclass) returns void
  language plpgsql volatile
  set search_path = pg_catalog, pg_temp
  as $$
declare
  parent    constant regclass := 'app.activity_logs';
  col       record;
  child_index record;
  bound     text := pg_get_expr((select c.relpartbound from pg_class c where c.oid = partition), partition);
  first_day text := to_char(substring(bound from 'FROM \(''([^'']+)''\)')::timestamptz at time zone 'UTC', 'YYYY-MM-DD');
  next_day  text := to_char(substring(bound from 'TO \(''([^'']+)''\)')::timestamptz at time zone 'UTC', 'YYYY-MM-DD');
begin
  perform app.copy_table_security(parent, partition);

  execute format('comment on table %s is %L', partition,
    format('Activity entries created from %s to %s (UTC, the later day excluded): one month of '
           'app.activity_logs. Made by app.create_activity_partitions and secured like its parent '
           '(row-level security forced, the same policies and grants); dropped whole by retention.',
           first_day, next_day));
  -- The indexes attached to the parent's (made by ATTACH PARTITION): the parent's comments.
  for child_index in
    select i.inhrelid::regclass as name,
           coalesce(obj_description(i.inhparent, 'pg_class'),
                    (select obj_description(k.oid, 'pg_constraint') from pg_constraint k where k.conindid = i.inhparent),
                    format('This partition''s part of %s.', i.inhparent::regclass)) as description
    from pg_inherits i join pg_index x on x.indexrelid = i.inhrelid
    where x.indrelid = partition
  loop
    execute format('comment on index %s is %L', child_index.name, child_index.description);
  end loop;
  for col in
    select a.attname, col_description(parent, a.attnum) as description
    from pg_attribute a
    where a.attrelid = parent and a.attnum > 0 and not a.attisdropped
  loop
    execute format('comment on column %s.%I is %L', partition, col.attname, col.description);
  end loop;
end
$$;
comment on function app.secure_activity_partition(regclass) is
  'Secures a partition of app.activity_logs like the parent: row-level security enabled and '
  'forced, copies of the parent''s policies and comments, exactly the parent''s grants. A '
  'partition can be queried by name, so it must not be weaker than the parent.';

create function app.create_activity_partitions(months_ahead integer default 3, since timestamptz default now())
  returns setof text
  language plpgsql volatile
  set search_path = pg_catalog, pg_temp
  -- Attaching takes a lock on app.activity_logs: never queue behind a long query for long.
  set lock_timeout = '2s'
  as $$
declare
  -- Months as UTC timestamps: month arithmetic must not follow the session's time zone.
  month timestamp := date_trunc('month', since at time zone 'UTC');
  last  timestamp := date_trunc('month', now() at time zone 'UTC') + make_interval(months => months_ahead);
  name  text;
begin
  if months_ahead is null or months_ahead not between 0 and 120 then
    raise exception 'months_ahead must be from 0 to 120' using errcode = 'TN400';
  end if;
  while month <= last loop
    name := app.activity_partition_name(month);
    if to_regclass(format('app.%I', name)) is null then
      -- Created apart and attached (SHARE UPDATE EXCLUSIVE on the parent) rather than
      -- CREATE TABLE ... PARTITION OF (ACCESS EXCLUSIVE): writers keep writing meanwhile.
      execute format('create table app.%I (like app.activity_logs including defaults including constraints)', name);
      execute format('alter table app.activity_logs attach partition app.%I for values from (%L) to (%L)',
                     name, month at time zone 'UTC', (month + interval '1 month') at time zone 'UTC');
      perform app.secure_activity_partition(format('app.%I', name)::regclass);
      return next name;
    end if;
    month := month + interval '1 month';
  end loop;
end
$$;
comment on function app.create_activity_partitions(integer, timestamptz) is
  'Creates the missing monthly partitions of app.activity_logs from the month of since to '
  'months_ahead months after the current one (UTC), each secured like the parent; returns '
  'their names. Idempotent. Run by the service as the owner at start and every hour.';

create function app.drop_activity_partitions_before(cutoff timestamptz) returns setof text
  language plpgsql volatile
  set search_path = pg_catalog, pg_temp
  set lock_timeout = '2s'
  as $$
declare
  partition record;
begin
  for partition in
    select c.oid::regclass::text as name,
           substring(pg_get_expr(c.relpartbound, c.oid) from 'TO \(''([^'']+)''\)')::timestamptz as upper_bound
    from pg_inherits i join pg_class c on c.oid = i.inhrelid
    where i.inhparent = 'app.activity_logs'::regclass
    order by 2
  loop
    if partition.upper_bound <= cutoff then
      execute format('alter table app.activity_logs detach partition %s', partition.name);
      execute format('drop table %s', partition.name);
      return next partition.name;
    end if;
  end loop;
end
$$;
comment on function app.drop_activity_partitions_before(timestamptz) is
  'Detaches and drops every partition of app.activity_logs whose entries are all older than '
  'cutoff; returns their names. What ACTIVITY_RETENTION_MONTHS runs: whole months go at once, '
  'no DELETE, no bloat. Restoring a deleted issue needs its deleted entry: it works within retention.';

create function app.maintain_activity_partitions(months_ahead integer default 3, retention_months integer default null)
  returns setof text
  language plpgsql volatile
  set search_path = pg_catalog, pg_temp
  as $$
begin
  -- Several instances may run this at once: one does it, the others skip.
  if not pg_try_advisory_xact_lock(hashtext('tenantry: activity partitions')) then
    return;
  end if;
  return query select 'created ' || p from app.create_activity_partitions(months_ahead) p;
  if retention_months > 0 then
    return query
      select 'dropped ' || p
      from app.drop_activity_partitions_before(now() - make_interval(months => retention_months)) p;
  end if;
end
$$;
comment on function app.maintain_activity_partitions(integer, integer) is
  'The periodic upkeep of app.activity_logs: partitions up to months_ahead months ahead, and '
  'with retention_months > 0 the months older than that dropped. Returns what it did; one '
  'caller at a time (an advisory lock), the others return nothing.';

------------------------------------------------------------------------------------------
-- The conversion: a partitioned app.activity_logs with the old one's columns, checks,
-- comments, indexes, policies and grants, then the entries, then the old table gone.
-- Done generically from the catalog, so whatever earlier migrations added to the table
-- comes along. Views and policies elsewhere that read app.activity_logs are re-pointed.
------------------------------------------------------------------------------------------
create temporary table activity_dependents (kind text, name text, target text, definition text, extra text)
  on commit drop;

-- Indexes other than the primary key, with their comments, as they read now.
insert into activity_dependents
select 'index', c.relname, null, pg_get_indexdef(i.indexrelid), obj_description(i.indexrelid, 'pg_class')
from pg_index i join pg_class c on c.oid = i.indexrelid
where i.indrelid = 'app.activity_logs'::regclass and not i.indisprimary;

-- Views reading the table (with their options: security_invoker must survive).
insert into activity_dependents
select distinct 'view', v.oid::regclass::text, null, pg_get_viewdef(v.oid), array_to_string(v.reloptions, ', ')
from pg_depend d
join pg_rewrite r on r.oid = d.objid and d.classid = 'pg_rewrite'::regclass
join pg_class v on v.oid = r.ev_class
where d.refobjid = 'app.activity_logs'::regclass and v.oid <> 'app.activity_logs'::regclass and v.relkind = 'v';

-- Policies of other tables that read it.
insert into activity_dependents
select distinct 'policy', p.polname, p.polrelid::regclass::text, pg_get_expr(p.polqual, p.polrelid),
       pg_get_expr(p.polwithcheck, p.polrelid)
from pg_depend d join pg_policy p on p.oid = d.objid and d.classid = 'pg_policy'::regclass
where d.refobjid = 'app.activity_logs'::regclass and p.polrelid <> 'app.activity_logs'::regclass;

alter table app.activity_logs rename to activity_logs_unpartitioned;
do $$
declare
  index record;
begin
  for index in
    select c.relname from pg_index i join pg_class c on c.oid = i.indexrelid
    where i.indrelid = 'app.activity_logs_unpartitioned'::regclass
  loop
    execute format('alter index app.%I rename to %I', index.relname, 'old_' || index.relname);
  end loop;
end
$$;

create table app.activity_logs (
  like app.activity_logs_unpartitioned including defaults including constraints including comments,
  constraint activity_logs_pkey primary key (organization_id, id, created_at)
) partition by range (created_at);
comment on table app.activity_logs is
  'Append-only history of every change to an issue, written in the same transaction as the '
  'change. The API role may insert and read (its own organization) but never update or delete. '
  'Partitioned by month of created_at (UTC; app.activity_logs_yYYYYmMM), so time-bounded reads '
  'touch only their months and old months can be dropped whole (ACTIVITY_RETENTION_MONTHS).';
comment on constraint activity_logs_pkey on app.activity_logs is
  'Led by organization_id; holds created_at because a partitioned table''s keys must hold the '
  'partition key. Entry ids are unique per organization by app.organization_counters.';

do $$
declare
  dependent record;
begin
  for dependent in select * from activity_dependents where kind = 'index' loop
    execute dependent.definition;
    if dependent.extra is not null then
      execute format('comment on index app.%I is %L', dependent.name, dependent.extra);
    end if;
  end loop;

  -- The old table's row-level security, policies and grants, on the new parent.
  perform app.copy_table_security('app.activity_logs_unpartitioned', 'app.activity_logs');

  -- A month for every entry there is, and the next three.
  perform app.create_activity_partitions(3, coalesce((select min(created_at) from app.activity_logs_unpartitioned), now()));
end
$$;

-- The entries. Row-level security is forced on both tables, so a migrating owner that is
-- not a superuser would copy nothing: lifted for the owner within this transaction only.
alter table app.activity_logs_unpartitioned no force row level security;
alter table app.activity_logs no force row level security;
insert into app.activity_logs select * from app.activity_logs_unpartitioned;
alter table app.activity_logs force row level security;

-- Re-point what read the old table, then drop it (no cascade: anything else that still
-- depends on it stops the migration here).
do $$
declare
  dependent record;
begin
  for dependent in select * from activity_dependents where kind = 'view' loop
    execute format('create or replace view %s%s as %s', dependent.name,
                   coalesce(' with (' || nullif(dependent.extra, '') || ')', ''), dependent.definition);
  end loop;
  for dependent in select * from activity_dependents where kind = 'policy' loop
    execute format('alter policy %I on %s', dependent.name, dependent.target)
         || coalesce(' using (' || dependent.definition || ')', '')
         || coalesce(' with check (' || dependent.extra || ')', '');
  end loop;
end
$$;
drop table app.activity_logs_unpartitioned;
analyze app.activity_logs;
