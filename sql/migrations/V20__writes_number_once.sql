-- tenantry, migration 20: cheaper writes. Each change below was measured on its own in
-- one backend (docs/performance.md, "Writes"); numbers, times, the order of an
-- organization's writes, every check and every answer stay the same.
--
-- 1. An activity entry is numbered by a plain UPDATE of the counters row. app.log_activity
--    used INSERT ... ON CONFLICT DO UPDATE, which also evaluates the insert's policy, its
--    BEFORE INSERT trigger and the conflict check, though the row exists for any
--    organization that has an issue to change; the upsert stays for the first write. A
--    create takes its issue number and its entry number in that one statement: it touched
--    the row three times, now twice (the live-issue trigger, which enforces ORG_MAX_ISSUES
--    for every insert, still counts).
-- 2. The value rules the CHECK constraints call (app.is_valid_id, app.is_blank,
--    app.has_control_chars, app.is_valid_idempotency_key) are PL/pgSQL. As SQL functions
--    they were inlined into the constraints, which PostgreSQL prepares again for every
--    statement that writes a row: each write parsed their text anew. PL/pgSQL keeps
--    them compiled for the session. Same rules, same results.
-- 3. app.json_time and app.issue_json are STABLE, what they are (to_char is stable), so
--    PostgreSQL inlines them into the statements that call them. Declared IMMUTABLE,
--    they could not be inlined and were parsed and planned again on every call.

create function app.next_activity(issues integer, out issue_id bigint, out entry_id bigint,
                                  out entry_at timestamptz, out route text, out hooks integer)
  language plpgsql
  as $$
begin
  -- Numbered and timed under the counters row lock: the time never runs behind the
  -- previous entry's, so ids and times grow together.
  update app.organization_counters c
     set last_issue_id = c.last_issue_id + next_activity.issues,
         last_activity_id = c.last_activity_id + 1,
         last_activity_at = greatest(c.last_activity_at, pg_catalog.now())
   where c.organization_id = app.current_org_id()
  returning c.last_issue_id, c.last_activity_id, c.last_activity_at,
            case when c.listened_until > pg_catalog.now() then c.stream_route end, c.webhooks
    into issue_id, entry_id, entry_at, route, hooks;
  if not found then
    -- The organization's first write: its row, or the one a concurrent first write made.
    insert into app.organization_counters as c
           (organization_id, last_issue_id, last_activity_id, last_activity_at)
    values (app.current_org_id(), next_activity.issues, 1, pg_catalog.now())
    on conflict (organization_id) do update
      set last_issue_id = c.last_issue_id + next_activity.issues,
          last_activity_id = c.last_activity_id + 1,
          last_activity_at = greatest(c.last_activity_at, pg_catalog.now())
    returning c.last_issue_id, c.last_activity_id, c.last_activity_at,
              case when c.listened_until > pg_catalog.now() then c.stream_route end, c.webhooks
      into issue_id, entry_id, entry_at, route, hooks;
  end if;
end
$$;
comment on function app.next_activity(integer) is
  'Numbers the current organization''s next activity entry (and, with issues = 1, its next '
  'issue) in one update of app.organization_counters, creating the row on the '
  'organization''s first write; returns the numbers, the entry''s time (never behind the '
  'previous entry''s), the stream route while an instance listens, and the number of '
  'webhook endpoints. The row stays locked to commit: the organization''s writes are '
  'numbered in commit order. Runs as the caller.';

create function app.append_activity(entry_id bigint, entry_at timestamptz, route text,
                                    hooks integer, issue_id bigint, action text, changes jsonb)
  returns void
  language plpgsql
  as $$
begin
  insert into app.activity_logs (organization_id, id, issue_id, actor_id, action, changes, created_at)
  values (app.current_org_id(), append_activity.entry_id, append_activity.issue_id,
          app.current_user_id(), append_activity.action, append_activity.changes,
          append_activity.entry_at);

  -- Only while an instance listens, and only the opaque route (migration 12).
  if route is not null then
    perform pg_catalog.pg_notify('tenantry_activity', route);
  end if;
  -- The entry is owed to every endpoint, in this transaction (migration 13).
  if hooks > 0 then
    update app.webhook_queue q
       set head = append_activity.entry_id, owed_since = coalesce(q.owed_since, append_activity.entry_at)
     where q.organization_id = app.current_org_id();
  end if;
end
$$;
comment on function app.append_activity(bigint, timestamptz, text, integer, bigint, text, jsonb) is
  'Writes an activity entry numbered by app.next_activity for the current organization and '
  'actor; wakes the instances that stream the organization (NOTIFY tenantry_activity with '
  'its opaque route, only while one listens); and owes the entry to the organization''s '
  'webhook endpoints (app.webhook_queue.head, only when it has some).';

create or replace function app.log_activity(issue_id bigint, action text, changes jsonb)
  returns void
  language plpgsql
  as $$
declare
  numbers record;
begin
  numbers := app.next_activity(0);
  perform app.append_activity(numbers.entry_id, numbers.entry_at, numbers.route, numbers.hooks,
                              log_activity.issue_id, log_activity.action, log_activity.changes);
end
$$;
comment on function app.log_activity(bigint, text, jsonb) is
  'Appends an activity entry for the current organization and actor: app.next_activity '
  'numbers and times it, app.append_activity writes it, wakes the streams and owes it to '
  'the webhook endpoints. Called by the api functions in the transaction of the change.';

create or replace function api.create_issue(title text, description text, status text default 'OPEN',
                                            priority text default 'MEDIUM', assignee_id text default null)
  returns setof api.issue
  language plpgsql
  as $$
declare
  numbers record;
  created app.issues;
begin
  perform app.require_context();

  -- The issue number and the created entry's number, in one update of the counters row.
  numbers := app.next_activity(1);

  insert into app.issues as i (organization_id, id, title, description, status, priority,
                               assignee_id, created_by)
  values (app.current_org_id(), numbers.issue_id, create_issue.title, create_issue.description,
          coalesce(create_issue.status, 'OPEN'), coalesce(create_issue.priority, 'MEDIUM'),
          create_issue.assignee_id, app.current_user_id())
  returning i.* into created;

  perform app.append_activity(numbers.entry_id, numbers.entry_at, numbers.route, numbers.hooks,
                              created.id, 'created', app.issue_json(created));
  return next app.to_api_issue(created);
end
$$;
comment on function api.create_issue(text, text, text, text, text) is
  'Creates an issue in the organization in app.org_id with the next issue number, created '
  'by app.user_id, and logs a created entry holding the new issue. Any role may create.';

grant execute on function app.next_activity(integer),
  app.append_activity(bigint, timestamptz, text, integer, bigint, text, jsonb) to tenantry_api;

create or replace function app.is_valid_id(value text) returns boolean
  language plpgsql immutable strict parallel safe
  as $$ begin return value ~ '^[A-Za-z0-9._:@-]{1,64}$'; end $$;
comment on function app.is_valid_id(text) is
  'Organization and user ids: 1 to 64 characters of A-Z a-z 0-9 . _ : @ -';

-- Exactly Unicode's White_Space property, which is what Rust's char::is_whitespace uses.
create or replace function app.is_blank(value text) returns boolean
  language plpgsql immutable strict parallel safe
  as $$
begin
  return pg_catalog.btrim(value, E' \t\n\r\u000b\u000c\u0085\u00a0\u1680\u2000\u2001\u2002'
    '\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000') = '';
end
$$;
comment on function app.is_blank(text) is
  'True when the text is empty or only white space (Unicode White_Space).';

-- Control characters are Unicode category Cc: U+0000-U+001F and U+007F-U+009F.
-- (PostgreSQL cannot store U+0000 at all.)
create or replace function app.has_control_chars(value text, allow_line_breaks boolean) returns boolean
  language plpgsql immutable strict parallel safe
  as $$
begin
  if allow_line_breaks then
    return value ~ '[\u0001-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]';
  end if;
  return value ~ '[\u0001-\u001f\u007f-\u009f]';
end
$$;
comment on function app.has_control_chars(text, boolean) is
  'True when the text holds a control character; with allow_line_breaks, tab, line feed '
  'and carriage return are allowed.';

create or replace function app.is_valid_idempotency_key(value text) returns boolean
  language plpgsql immutable strict parallel safe
  as $$ begin return value ~ '^[\u0020-\u007e]{1,255}$'; end $$;
comment on function app.is_valid_idempotency_key(text) is
  'Idempotency keys: 1 to 255 printable ASCII characters (space to ~), as HTTP headers carry them.';

alter function app.json_time(timestamptz) stable;
alter function app.issue_json(app.issues) stable;
