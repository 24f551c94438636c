//! The start-up check that requests really run under row-level security.

use super::{Database, Error, RequestRole, Sql};

/// Why the request role must not serve requests.
#[derive(Debug, thiserror::Error)]
pub enum RoleProblem {
    #[error("requests run as {role}, which is or can become a superuser")]
    Superuser { role: String },
    #[error("requests run as {role}, which has or can become a role with BYPASSRLS")]
    BypassesRls { role: String },
    #[error(
        "requests run as {role}, which owns (or can act as the owner of) {count} objects in the \
         app or api schemas and could turn row-level security off"
    )]
    OwnsObjects { role: String, count: i64 },
    #[error(
        "requests log in as {role}, which is a member of {others}: a session can SET ROLE to any \
         of them, so its login may be a member of {api} only",
        api = super::API_ROLE
    )]
    MemberOfOtherRoles { role: String, others: String },
    #[error("could not check the request role")]
    Check(#[source] Error),
}

/// Everything the role of a request transaction could become or own that would let it
/// step around row-level security. `pg_has_role(..., 'MEMBER')` covers the role itself,
/// roles it inherits and roles it may SET ROLE to.
const CHECK: Sql = Sql {
    text: "
    select current_user::text,
           exists (select from pg_catalog.pg_roles r
                   where pg_catalog.pg_has_role(current_user, r.oid, 'MEMBER') and r.rolsuper),
           exists (select from pg_catalog.pg_roles r
                   where pg_catalog.pg_has_role(current_user, r.oid, 'MEMBER') and r.rolbypassrls),
           (select count(*) from pg_catalog.pg_class c
            where c.relnamespace in ('app'::regnamespace, 'api'::regnamespace)
              and pg_catalog.pg_has_role(current_user, c.relowner, 'MEMBER'))
         + (select count(*) from pg_catalog.pg_proc p
            where p.pronamespace in ('app'::regnamespace, 'api'::regnamespace)
              and pg_catalog.pg_has_role(current_user, p.proowner, 'MEMBER'))
         + (select count(*) from pg_catalog.pg_namespace n
            where n.nspname in ('app', 'api')
              and pg_catalog.pg_has_role(current_user, n.nspowner, 'MEMBER')),
           session_user::text,
           (select pg_catalog.string_agg(r.rolname, ', ' order by r.rolname) from pg_catalog.pg_roles r
            where pg_catalog.pg_has_role(session_user, r.oid, 'MEMBER')
              and r.rolname not in (session_user, 'tenantry_api'))",
    param_types: &[],
};

/// Runs [`CHECK`] exactly as a request would run (same pool, same role switch) and
/// refuses a role that could bypass row-level security.
pub async fn verify_request_role(db: &Database) -> Result<String, RoleProblem> {
    let rows = db.call_without_tenant(&CHECK, &[]).await.map_err(RoleProblem::Check)?;
    let row = rows.first().expect("the check returns one row");
    let role: String = row.get(0);
    if row.get::<_, bool>(1) {
        return Err(RoleProblem::Superuser { role });
    }
    if row.get::<_, bool>(2) {
        return Err(RoleProblem::BypassesRls { role });
    }
    let count: i64 = row.get(3);
    if count > 0 {
        return Err(RoleProblem::OwnsObjects { role, count });
    }
    // The login itself (the same role when it logs in as tenantry_api): whatever it is a
    // member of, the session can become. Not checked when the owner's login switches role
    // per transaction, which ALLOW_OWNER_REQUEST_LOGIN=1 accepted (and warned about).
    if db.role() == RequestRole::LoggedIn
        && let Some(others) = row.get::<_, Option<String>>(5)
    {
        return Err(RoleProblem::MemberOfOtherRoles { role: row.get(4), others });
    }
    Ok(role)
}
