//! Who is calling: the three identity headers, read before anything else about the
//! request (a failure is a 401 naming the headers; nothing else is evaluated).
//!
//! They are declared as three API-key security schemes so Swagger UI's Authorize dialog
//! takes them once; `openapi.rs` then states in the document that all three are required
//! together.

use poem::{Request, RequestBody, http::HeaderMap};
use poem_openapi::{
    ApiExtractor, ApiExtractorType, ExtractParamOptions,
    registry::{MetaSecurityScheme, Registry},
};

use super::error::{ApiError, FieldError};
use crate::domain::{Role, TenantContext, rules::is_valid_id};

pub const ORGANIZATION_HEADER: &str = "x-organization-id";
pub const USER_HEADER: &str = "x-user-id";
pub const ROLE_HEADER: &str = "x-user-role";

/// Security scheme names in the OpenAPI document, with their header and description.
pub const HEADER_SCHEMES: [(&str, &str, &str); 3] = [
    (
        "organizationId",
        ORGANIZATION_HEADER,
        "The organization (tenant) to act in: 1-64 characters of A-Z a-z 0-9 . _ : @ -",
    ),
    ("userId", USER_HEADER, "The acting user: 1-64 characters of A-Z a-z 0-9 . _ : @ -"),
    ("userRole", ROLE_HEADER, "The acting user's role: ADMIN or MEMBER (exactly)."),
];

/// Reads and validates the identity headers, naming every one that is wrong.
pub fn tenant_from_headers(headers: &HeaderMap) -> Result<TenantContext, ApiError> {
    let mut errors = Vec::new();
    let mut read = |name: &str, rule: &str, valid: &dyn Fn(&str) -> bool| -> Option<String> {
        let values: Vec<_> = headers.get_all(name).iter().collect();
        let problem = match values.as_slice() {
            [] => "is missing",
            [value] => match value.to_str() {
                Ok(text) if valid(text) => return Some(text.to_owned()),
                _ => rule,
            },
            _ => "must be sent once",
        };
        errors.push(FieldError::new(name, problem));
        None
    };
    let id_rule = "must be 1-64 characters of A-Z a-z 0-9 . _ : @ -";
    let org_id = read(ORGANIZATION_HEADER, id_rule, &is_valid_id);
    let user_id = read(USER_HEADER, id_rule, &is_valid_id);
    let role = read(ROLE_HEADER, "must be ADMIN or MEMBER", &|v| Role::parse(v).is_some());
    match (org_id, user_id, role.as_deref().and_then(Role::parse)) {
        (Some(org_id), Some(user_id), Some(role)) => Ok(TenantContext { org_id, user_id, role }),
        _ => Err(ApiError::Unauthenticated(errors)),
    }
}

fn register_header_schemes(registry: &mut Registry) {
    for (scheme, header, description) in HEADER_SCHEMES {
        registry.create_security_scheme(
            scheme,
            MetaSecurityScheme {
                ty: "apiKey",
                description: Some(description),
                name: Some(header),
                key_in: Some("header"),
                scheme: None,
                bearer_format: None,
                flows: None,
                openid_connect_url: None,
            },
        );
    }
}

/// What a MEMBER gets from an operation only an ADMIN may call.
pub fn admin_only_error() -> ApiError {
    ApiError::Forbidden("only an ADMIN may do this".into())
}

/// Any authenticated caller (ADMIN or MEMBER).
pub struct Caller(pub TenantContext);

/// A caller whose role is ADMIN; a MEMBER gets 403 before the body is read. PostgreSQL
/// enforces the same rule in the api functions and the policies, whoever calls them.
pub struct AdminCaller(pub TenantContext);

macro_rules! identity_extractor {
    ($ty:ident, $from:expr) => {
        impl<'a> ApiExtractor<'a> for $ty {
            const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];

            type ParamType = ();
            type ParamRawType = ();

            fn register(registry: &mut Registry) {
                register_header_schemes(registry);
            }

            fn security_schemes() -> Vec<&'static str> {
                HEADER_SCHEMES.iter().map(|(scheme, ..)| *scheme).collect()
            }

            async fn from_request(
                request: &'a Request,
                _body: &mut RequestBody,
                _param_opts: ExtractParamOptions<Self::ParamType>,
            ) -> poem::Result<Self> {
                let from: fn(TenantContext) -> Result<$ty, ApiError> = $from;
                Ok(from(tenant_from_headers(request.headers())?)?)
            }
        }
    };
}

identity_extractor!(Caller, |ctx| Ok(Caller(ctx)));
identity_extractor!(AdminCaller, |ctx| match ctx.role {
    Role::Admin => Ok(AdminCaller(ctx)),
    Role::Member => Err(admin_only_error()),
});
