//! The identity every request carries into its transaction.

use std::fmt;

/// A role within an organization. ADMIN may change and delete issues; MEMBER may read and
/// create them. PostgreSQL enforces the same rule (`app.require_admin`, RLS policies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    Member,
}

impl Role {
    /// The exact spelling used in headers and in the `app.role` setting.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "ADMIN",
            Role::Member => "MEMBER",
        }
    }

    /// Parses the exact spelling: `admin` or ` ADMIN` are not roles.
    pub fn parse(value: &str) -> Option<Role> {
        match value {
            "ADMIN" => Some(Role::Admin),
            "MEMBER" => Some(Role::Member),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Tenant and actor of one request, already validated (see [`super::rules::is_valid_id`]).
/// It becomes the transaction settings `app.org_id`, `app.user_id` and `app.role`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantContext {
    pub org_id: String,
    pub user_id: String,
    pub role: Role,
}
