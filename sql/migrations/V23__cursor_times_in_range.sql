-- tenantry, migration 23: a cursor's time must be one the API could have issued.
--
-- Cursors are opaque but not secret: a client can re-encode one. A time at the edge of
-- PostgreSQL's range (e.g. the year 294276) made api.list_activity's month walk
-- (migration 21) overflow computing the next month: a 400 saying "timestamp out of
-- range" rather than the cursor's own answer. app.decode_cursor now refuses a time
-- outside the years 1 to 9999 (infinity too) as it refuses any cursor the API did not
-- issue: TN400, column after.

create or replace function app.decode_cursor(cursor text, sort text, fingerprint text)
  returns app.page_position
  language plpgsql stable
  as $$
declare
  payload  jsonb;
  position app.page_position;
begin
  if cursor is null then
    return null;
  end if;
  if pg_catalog.length(cursor) > 1024 or cursor !~ '^[A-Za-z0-9_-]+$' then
    raise exception 'cursor is not one this API issued' using errcode = 'TN400', column = 'after';
  end if;
  begin
    payload := pg_catalog.convert_from(pg_catalog.decode(
      pg_catalog.translate(cursor, '-_', '+/') || pg_catalog.repeat('=', (4 - pg_catalog.length(cursor) % 4) % 4),
      'base64'), 'UTF8')::jsonb;
    if pg_catalog.jsonb_array_length(payload) <> 5 or payload->>0 is distinct from '1' then
      raise exception using errcode = 'invalid_parameter_value';
    end if;
    position.id := (payload->>4)::bigint;
    case pg_catalog.jsonb_typeof(payload->3)
      when 'string' then
        position.at := (payload->>3)::timestamptz;
        -- The API issues times it stored; one at the edge of PostgreSQL's range would
        -- overflow the month bounds a feed page computes from it (migration 21).
        if not position.at between '0001-01-01 00:00:00+00' and '9999-12-31 23:59:59.999999+00' then
          raise exception using errcode = 'invalid_parameter_value';
        end if;
      when 'number' then position.rank := (payload->>3)::bigint;
      else raise exception using errcode = 'invalid_parameter_value';
    end case;
  exception when data_exception then
    raise exception 'cursor is not one this API issued' using errcode = 'TN400', column = 'after';
  end;
  if payload->>1 is distinct from sort then
    raise exception 'cursor was issued for sort %, not %: start again without it', payload->>1, sort
      using errcode = 'TN400', column = 'after';
  end if;
  if payload->>2 is distinct from fingerprint or position.id is null then
    raise exception 'cursor was issued for other filters: start again without it'
      using errcode = 'TN400', column = 'after';
  end if;
  return position;
end
$$;
comment on function app.decode_cursor(text, text, text) is
  'Reads a cursor made by app.encode_cursor for this sort and these filters (fingerprint); '
  'raises TN400 (column after) for anything else.';
