//! AUTH_MODE=jwt: `Authorization: Bearer <JWT>` verified with jsonwebtoken (HS256 with a
//! shared secret, or RS256 / ES256 with the issuer's public key), its claims mapped to the
//! same [`TenantContext`] the identity headers give in development. Also mints tokens for
//! `tenantry token`, so the README's curl examples need no other tool.

use std::{fs, io, path::Path, path::PathBuf, time::Duration};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde_json::{Map, Value};

use super::json::parse_object;

use crate::{
    config::JwtConfig,
    domain::{
        Role, TenantContext,
        rules::{ID_RULE, is_valid_id},
    },
};

/// HS256 secrets shorter than the hash (256 bits) weaken it (RFC 7518 §3.2).
pub const MIN_SECRET_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum JwtSetupError {
    #[error("AUTH_MODE=jwt needs JWT_SECRET (HS256) or JWT_PUBLIC_KEY_FILE (RS256 or ES256)")]
    NoKey,
    #[error("set one of JWT_SECRET and JWT_PUBLIC_KEY_FILE, not both")]
    TwoKeys,
    #[error("JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes")]
    ShortSecret,
    #[error("could not read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path} holds no RSA or EC P-256 key in PEM form")]
    BadKey { path: PathBuf },
    #[error("JWT_ORG_CLAIM, JWT_USER_CLAIM and JWT_ROLE_CLAIM must be set and different")]
    ClaimNames,
    #[error(
        "AUTH_MODE=jwt needs JWT_AUDIENCE, so that a token minted for another service is refused \
         here; set JWT_AUDIENCE_OPTIONAL=1 to accept tokens for any audience"
    )]
    NoAudience,
    #[error("could not sign the token: {0}")]
    Sign(#[source] jsonwebtoken::errors::Error),
}

/// Verifies bearer tokens. Built once at start-up; verification is CPU only.
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
    org_claim: String,
    user_claim: String,
    role_claim: String,
    /// Longest lifetime accepted, in seconds (0: no cap).
    max_ttl_seconds: u64,
}

impl JwtVerifier {
    pub fn new(config: &JwtConfig) -> Result<JwtVerifier, JwtSetupError> {
        check_claim_names(config)?;
        let (key, algorithm) = match (&config.jwt_secret, &config.jwt_public_key_file) {
            (None, None) => return Err(JwtSetupError::NoKey),
            (Some(_), Some(_)) => return Err(JwtSetupError::TwoKeys),
            (Some(secret), None) => {
                if secret.len() < MIN_SECRET_BYTES {
                    return Err(JwtSetupError::ShortSecret);
                }
                (DecodingKey::from_secret(secret.as_bytes()), Algorithm::HS256)
            }
            (None, Some(path)) => {
                let pem = read(path)?;
                // jsonwebtoken tells the key type from the PEM's algorithm identifier.
                match DecodingKey::from_rsa_pem(&pem) {
                    Ok(key) => (key, Algorithm::RS256),
                    Err(_) => DecodingKey::from_ec_pem(&pem)
                        .map(|key| (key, Algorithm::ES256))
                        .map_err(|_| JwtSetupError::BadKey { path: path.clone() })?,
                }
            }
        };
        if config.jwt_audience.is_none() && !config.jwt_audience_optional {
            return Err(JwtSetupError::NoAudience);
        }
        let mut validation = Validation::new(algorithm);
        validation.leeway = config.jwt_leeway_seconds;
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        validation.validate_aud = config.jwt_audience.is_some();
        if let Some(audience) = &config.jwt_audience {
            validation.set_audience(&[audience]);
            required.push("aud");
        }
        if let Some(issuer) = &config.jwt_issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        Ok(JwtVerifier {
            key,
            validation,
            org_claim: config.jwt_org_claim.clone(),
            user_claim: config.jwt_user_claim.clone(),
            role_claim: config.jwt_role_claim.clone(),
            max_ttl_seconds: config.jwt_max_ttl_seconds,
        })
    }

    pub fn algorithm(&self) -> Algorithm {
        self.validation.algorithms[0]
    }

    /// The tenant a valid token names, or why the token is refused (for
    /// `error_description`: plain words, no quotes).
    pub fn verify(&self, token: &str) -> Result<TenantContext, String> {
        jsonwebtoken::decode::<Map<String, Value>>(token, &self.key, &self.validation)
            .map_err(|err| rejection(err.kind(), self.algorithm()))?;
        // Verified; now read the claims again, refusing a key that appears twice, which
        // jsonwebtoken (serde) would read as its last value.
        let claims = token
            .split('.')
            .nth(1)
            .and_then(|payload| URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok())
            .ok_or_else(|| "the token is malformed".to_owned())
            .and_then(|payload| {
                parse_object(&payload).map_err(|_| "the token's claims name a key twice".to_owned())
            })?;
        self.check_lifetime(&claims)?;
        let text = |name: &str, rule: &str, valid: &dyn Fn(&str) -> bool| match claims.get(name) {
            None | Some(Value::Null) => Err(format!("the token lacks the {name} claim")),
            Some(Value::String(value)) if valid(value) => Ok(value.clone()),
            Some(_) => Err(format!("the token's {name} claim {rule}")),
        };
        let id_rule = format!("must be {ID_RULE}");
        let org_id = text(&self.org_claim, &id_rule, &is_valid_id)?;
        let user_id = text(&self.user_claim, &id_rule, &is_valid_id)?;
        let role = text(&self.role_claim, "must be ADMIN or MEMBER", &|v| Role::parse(v).is_some())?;
        let role = Role::parse(&role).expect("checked above");
        Ok(TenantContext { org_id, user_id, role })
    }
}

impl JwtVerifier {
    /// A stolen token is good until it expires: refuse one that lives longer than
    /// JWT_MAX_TTL_SECONDS, from `iat` when it says when it was issued, else from now. An
    /// `iat` later than now (beyond the leeway) counts from now: a token cannot shorten
    /// its lifetime by claiming to be issued in the future.
    fn check_lifetime(&self, claims: &Map<String, Value>) -> Result<(), String> {
        if self.max_ttl_seconds == 0 {
            return Ok(());
        }
        let seconds = |name: &str| claims.get(name).and_then(Value::as_f64);
        let exp = seconds("exp").ok_or("the token's exp claim is malformed")?;
        let now = jsonwebtoken::get_current_timestamp() as f64;
        let start = match claims.get("iat") {
            None => now,
            Some(_) => seconds("iat")
                .ok_or("the token's iat claim is malformed")?
                .min(now + self.validation.leeway as f64),
        };
        if exp - start > self.max_ttl_seconds as f64 {
            return Err(format!(
                "the token lives longer than the {} seconds this service accepts (JWT_MAX_TTL_SECONDS)",
                self.max_ttl_seconds
            ));
        }
        Ok(())
    }
}

/// The `exp` claim (seconds since the epoch) of a token this request already had verified:
/// read, not checked again. For a stream, which must end when its credentials do.
pub fn verified_expiry(token: &str) -> Option<u64> {
    let payload = URL_SAFE_NO_PAD.decode(token.split('.').nth(1)?.trim_end_matches('=')).ok()?;
    let claims = parse_object(&payload).ok()?;
    claims.get("exp").and_then(Value::as_f64).map(|exp| exp.max(0.0) as u64)
}

fn rejection(kind: &ErrorKind, algorithm: Algorithm) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "the token has expired".into(),
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".into(),
        ErrorKind::InvalidAudience => "the token is for another audience".into(),
        ErrorKind::InvalidIssuer => "the token is from another issuer".into(),
        ErrorKind::InvalidSignature => "the token's signature does not verify".into(),
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
            format!("the token must be signed with {algorithm:?}")
        }
        ErrorKind::MissingRequiredClaim(claim) => format!("the token lacks the {claim} claim"),
        ErrorKind::InvalidClaimFormat(claim) => format!("the token's {claim} claim is malformed"),
        _ => "the token is malformed".into(),
    }
}

fn check_claim_names(config: &JwtConfig) -> Result<(), JwtSetupError> {
    let names = [&config.jwt_org_claim, &config.jwt_user_claim, &config.jwt_role_claim];
    let distinct = names[0] != names[1] && names[1] != names[2] && names[0] != names[2];
    if names.iter().any(|n| n.is_empty()) || !distinct {
        return Err(JwtSetupError::ClaimNames);
    }
    Ok(())
}

fn read(path: &Path) -> Result<Vec<u8>, JwtSetupError> {
    fs::read(path).map_err(|source| JwtSetupError::Read { path: path.to_owned(), source })
}

/// Signs a token for `ctx`, valid from now for `ttl`, with the claim names, audience and
/// issuer of `config`: HS256 with JWT_SECRET, or RS256 / ES256 with a private key file.
pub fn mint(
    config: &JwtConfig,
    private_key_file: Option<&Path>,
    ctx: &TenantContext,
    ttl: Duration,
) -> Result<String, JwtSetupError> {
    check_claim_names(config)?;
    let (key, algorithm) = match (private_key_file, &config.jwt_secret) {
        (Some(path), _) => {
            let pem = read(path)?;
            match EncodingKey::from_rsa_pem(&pem) {
                Ok(key) => (key, Algorithm::RS256),
                Err(_) => EncodingKey::from_ec_pem(&pem)
                    .map(|key| (key, Algorithm::ES256))
                    .map_err(|_| JwtSetupError::BadKey { path: path.to_owned() })?,
            }
        }
        (None, Some(secret)) if secret.len() < MIN_SECRET_BYTES => return Err(JwtSetupError::ShortSecret),
        (None, Some(secret)) => (EncodingKey::from_secret(secret.as_bytes()), Algorithm::HS256),
        (None, None) => return Err(JwtSetupError::NoKey),
    };
    let now = jsonwebtoken::get_current_timestamp();
    let mut claims = Map::new();
    claims.insert(config.jwt_org_claim.clone(), ctx.org_id.clone().into());
    claims.insert(config.jwt_user_claim.clone(), ctx.user_id.clone().into());
    claims.insert(config.jwt_role_claim.clone(), ctx.role.as_str().into());
    claims.insert("iat".into(), now.into());
    claims.insert("exp".into(), (now + ttl.as_secs()).into());
    if let Some(audience) = &config.jwt_audience {
        claims.insert("aud".into(), audience.clone().into());
    }
    if let Some(issuer) = &config.jwt_issuer {
        claims.insert("iss".into(), issuer.clone().into());
    }
    jsonwebtoken::encode(&Header::new(algorithm), &claims, &key).map_err(JwtSetupError::Sign)
}
