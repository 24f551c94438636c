//! Who is calling, read before anything else about the request (a failure is a 401;
//! nothing else is evaluated), then the caller's rate limits (429).
//!
//! - AUTH_MODE=headers (development): the three identity headers, trusted as sent.
//! - AUTH_MODE=jwt: `Authorization: Bearer <JWT>` (see `jwt.rs`); the headers are
//!   ignored, whatever they say.
//!
//! The headers are declared as three API-key security schemes so Swagger UI's Authorize
//! dialog takes them once, and the token as an HTTP bearer scheme; `http::spec` states in
//! the document that the three headers are required together, or the token.

use poem::{
    Request, RequestBody,
    http::{HeaderMap, header::AUTHORIZATION},
};
use poem_openapi::{
    ApiExtractor, ApiExtractorType, ExtractParamOptions,
    registry::{MetaSecurityScheme, Registry},
};

use std::sync::{Arc, OnceLock};

use super::jwt::{JwtSetupError, JwtVerifier};
use crate::{
    config::{AuthMode, JwtConfig},
    domain::{
        Role, TenantContext,
        rules::{id_rule, is_valid_id},
    },
    http::{
        error::{ApiError, FieldError},
        rate_limit::{Allowance, RateLimits},
    },
};

pub const ORGANIZATION_HEADER: &str = "x-organization-id";
pub const USER_HEADER: &str = "x-user-id";
pub const ROLE_HEADER: &str = "x-user-role";

/// Security scheme names in the OpenAPI document, with their header and description.
pub const HEADER_SCHEMES: [(&str, &str, &str); 3] = [
    (
        "organizationId",
        ORGANIZATION_HEADER,
        concat!("AUTH_MODE=headers (development): the organization (tenant) to act in, ", id_rule!()),
    ),
    ("userId", USER_HEADER, concat!("AUTH_MODE=headers (development): the acting user, ", id_rule!())),
    (
        "userRole",
        ROLE_HEADER,
        "AUTH_MODE=headers (development): the acting user's role, ADMIN or MEMBER (exactly).",
    ),
];

/// The bearer scheme's name in the OpenAPI document.
pub const BEARER_SCHEME: &str = "bearerAuth";

/// Turns a request's credentials into a [`TenantContext`], as the mode says.
pub enum Authenticator {
    Headers,
    Jwt(Box<JwtVerifier>),
}

impl Authenticator {
    pub fn new(mode: AuthMode, jwt: &JwtConfig) -> Result<Authenticator, JwtSetupError> {
        Ok(match mode {
            AuthMode::Headers => Authenticator::Headers,
            AuthMode::Jwt => Authenticator::Jwt(Box::new(JwtVerifier::new(jwt)?)),
        })
    }

    pub fn authenticate(&self, headers: &HeaderMap) -> Result<TenantContext, ApiError> {
        match self {
            Authenticator::Headers => tenant_from_headers(headers),
            Authenticator::Jwt(verifier) => tenant_from_bearer_token(verifier, headers),
        }
    }
}

/// Reads and verifies `Authorization: Bearer <JWT>`.
fn tenant_from_bearer_token(verifier: &JwtVerifier, headers: &HeaderMap) -> Result<TenantContext, ApiError> {
    let rejected = |detail: &str, error| ApiError::BearerTokenRejected { detail: detail.to_owned(), error };
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(rejected("a bearer token is required: send Authorization: Bearer <JWT>", None));
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty());
    let Some(token) = token else {
        return Err(rejected("the Authorization header must be: Bearer <JWT>", None));
    };
    verifier.verify(token).map_err(|detail| rejected(&detail, Some("invalid_token")))
}

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
    let id_rule = concat!("must be ", id_rule!());
    let org_id = read(ORGANIZATION_HEADER, id_rule, &is_valid_id);
    let user_id = read(USER_HEADER, id_rule, &is_valid_id);
    let role = read(ROLE_HEADER, "must be ADMIN or MEMBER", &|v| Role::parse(v).is_some());
    match (org_id, user_id, role.as_deref().and_then(Role::parse)) {
        (Some(org_id), Some(user_id), Some(role)) => Ok(TenantContext { org_id, user_id, role }),
        _ => Err(ApiError::Unauthenticated(errors)),
    }
}

fn register_schemes(registry: &mut Registry) {
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
    registry.create_security_scheme(
        BEARER_SCHEME,
        MetaSecurityScheme {
            ty: "http",
            description: Some(
                "Accepted when the server runs with AUTH_MODE=jwt: a JWT whose claims name the \
                 organization, the user and the role (by default `org`, `sub` and `role`).",
            ),
            name: None,
            key_in: None,
            scheme: Some("bearer"),
            bearer_format: Some("JWT"),
            flows: None,
            openid_connect_url: None,
        },
    );
}

/// What identifying a caller needs, for the whole server: how to authenticate, and the
/// rate limits. The middleware puts it in every request's extensions.
pub struct Gate {
    pub authenticator: Authenticator,
    pub limits: RateLimits,
}

/// What identification learned about one request, for the middleware: the organization
/// (for the log line), the caller's allowance (the `RateLimit-*` headers), and the limit
/// that refused it, if one did (metrics).
#[derive(Default)]
pub struct Admission {
    pub organization: OnceLock<String>,
    pub allowance: OnceLock<Allowance>,
    pub refused_by: OnceLock<&'static str>,
}

/// Authenticates the request and takes it from its rate limits: the one place both happen.
fn identify(request: &Request) -> Result<TenantContext, ApiError> {
    let installed = || ApiError::Internal("no identification gate: http::routes installs it".into());
    let gate = request.extensions().get::<Arc<Gate>>().ok_or_else(installed)?;
    let admission = request.extensions().get::<Arc<Admission>>().ok_or_else(installed)?;
    let ctx = gate.authenticator.authenticate(request.headers())?;
    let _ = admission.organization.set(ctx.org_id.clone());
    match gate.limits.admit(&ctx) {
        Ok(allowance) => {
            if let Some(allowance) = allowance {
                let _ = admission.allowance.set(allowance);
            }
            Ok(ctx)
        }
        Err(refusal) => {
            let _ = admission.allowance.set(refusal.allowance);
            let _ = admission.refused_by.set(refusal.scope);
            Err(ApiError::TooManyRequests { scope: refusal.scope, retry_after: refusal.retry_after })
        }
    }
}

/// When the caller's credentials stop being valid, in seconds since the epoch: the bearer
/// token's `exp` in AUTH_MODE=jwt (already verified for this request), `None` for the
/// identity headers, which do not expire.
pub fn credentials_expire(request: &Request) -> Option<u64> {
    let gate = request.extensions().get::<Arc<Gate>>()?;
    if !matches!(gate.authenticator, Authenticator::Jwt(_)) {
        return None;
    }
    let value = request.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (_, token) = value.split_once(' ')?;
    super::jwt::verified_expiry(token.trim())
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
                register_schemes(registry);
            }

            fn security_schemes() -> Vec<&'static str> {
                HEADER_SCHEMES.iter().map(|(scheme, ..)| *scheme).chain([BEARER_SCHEME]).collect()
            }

            async fn from_request(
                request: &'a Request,
                _body: &mut RequestBody,
                _param_opts: ExtractParamOptions<Self::ParamType>,
            ) -> poem::Result<Self> {
                let from: fn(TenantContext) -> Result<$ty, ApiError> = $from;
                Ok(from(identify(request)?)?)
            }
        }
    };
}

identity_extractor!(Caller, |ctx| Ok(Caller(ctx)));
identity_extractor!(AdminCaller, |ctx| match ctx.role {
    Role::Admin => Ok(AdminCaller(ctx)),
    Role::Member => Err(admin_only_error()),
});
