# Shell helpers shared by .ci/run, bench/run and bench/scale (sourced, not run).

# Whether the PostgreSQL program $1 (postgres, pgbench, pg_dump, ...) is installed next to
# initdb, in the places the service (and pg-sandbox) look: PATH, `pg_config --bindir`,
# /usr/lib/postgresql/*/bin.
have_postgres_tool() {
  local dir
  for dir in $(echo "${PATH}" | tr ':' ' ') "$(pg_config --bindir 2>/dev/null || true)" /usr/lib/postgresql/*/bin; do
    [ -n "${dir}" ] && [ -x "${dir}/initdb" ] && [ -x "${dir}/$1" ] && return 0
  done
  return 1
}

# Whether PostgreSQL's server binaries (initdb and postgres) are installed.
have_postgres_server() {
  have_postgres_tool postgres
}

# Whether PgBouncer is installed (Debian puts it in /usr/sbin).
have_pgbouncer() {
  command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ]
}

# Installs the Debian packages given, if any (apt-get, as root).
install_packages() {
  [ "$#" -gt 0 ] || return 0
  printf '\n==> installing %s\n' "$*" >&2
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends -o DPkg::Lock::Timeout=300 "$@"
}
