//! AUTH_MODE=jwt: bearer tokens verified (HS256, RS256, ES256), claims mapped to the
//! tenant, every bad token a 401 with WWW-Authenticate, identity headers never trusted.

use std::{path::Path, process::Command, time::Duration};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tenantry::{
    App, StartupError,
    config::{AuthMode, Config, JwtConfig},
    domain::{Role, TenantContext},
    http::extract::jwt::{self, JwtSetupError},
};

use crate::{helpers::*, ops::startup::tempdir};

const SECRET: &str = "a test secret that is long enough for HS256";

fn jwt_config() -> JwtConfig {
    JwtConfig {
        jwt_secret: Some(SECRET.into()),
        jwt_audience: Some("tenantry-api".into()),
        jwt_issuer: Some("https://id.example.test".into()),
        ..JwtConfig::default()
    }
}

async fn jwt_app(jwt: JwtConfig) -> TestApp {
    spawn_app_with(Mode::ApiLogin, move |config| {
        config.auth_mode = AuthMode::Jwt;
        config.jwt = jwt;
    })
    .await
}

fn ctx(org: &str, user: &str, role: Role) -> TenantContext {
    TenantContext { org_id: org.into(), user_id: user.into(), role }
}

fn token(org: &str, user: &str, role: Role) -> String {
    jwt::mint(&jwt_config(), None, &ctx(org, user, role), Duration::from_secs(600)).unwrap()
}

fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

/// A token with exactly these claims, signed with `secret`.
fn signed(claims: Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn valid_claims() -> Value {
    json!({"org": "acme", "sub": "ann", "role": "ADMIN", "exp": now() + 600,
           "aud": "tenantry-api", "iss": "https://id.example.test"})
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    if value.is_null() {
        claims.as_object_mut().unwrap().remove(key);
    } else {
        claims[key] = value;
    }
    claims
}

fn bearer(app: &TestApp, method: Method, path: &str, token: &str) -> TestRequest {
    app.request(method, path, None).bearer_auth(token)
}

#[tokio::test]
async fn a_valid_token_names_the_tenant_user_and_role() {
    let app = jwt_app(jwt_config()).await;
    let ann = token("acme", "ann", Role::Admin);
    let created: Value = bearer(&app, Method::POST, "/api/issues", &ann)
        .json(&json!({"title": "t", "description": "d"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (created["organizationId"].as_str(), created["createdBy"].as_str()),
        (Some("acme"), Some("ann"))
    );
    let patched = bearer(&app, Method::PATCH, "/api/issues/1", &ann).json(&json!({"status": "DONE"})).send();
    assert_eq!(patched.await.unwrap().status(), StatusCode::OK);

    // The role comes from the token too.
    let mo = token("acme", "mo", Role::Member);
    let refused = bearer(&app, Method::PATCH, "/api/issues/1", &mo).json(&json!({"status": "OPEN"})).send();
    assert_problem(refused.await.unwrap(), StatusCode::FORBIDDEN).await;
    let listed: Vec<Value> =
        bearer(&app, Method::GET, "/api/issues", &mo).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed.len(), 1);
    // Another organization's token sees nothing of acme's.
    let gus = token("globex", "gus", Role::Admin);
    assert_problem(
        bearer(&app, Method::GET, "/api/issues/1", &gus).send().await.unwrap(),
        StatusCode::NOT_FOUND,
    )
    .await;
}

#[tokio::test]
async fn in_jwt_mode_the_identity_headers_are_never_trusted() {
    let app = jwt_app(jwt_config()).await;
    // Headers alone: no token, so 401, however ADMIN they claim to be.
    let response = app.request(Method::GET, "/api/issues", Some(&admin("acme"))).send().await.unwrap();
    assert_eq!(response.headers()["www-authenticate"], "Bearer realm=\"tenantry\"");
    assert_problem(response, StatusCode::UNAUTHORIZED).await;

    // A MEMBER's token with headers claiming ADMIN of another organization: the token wins.
    let mo = token("acme", "mo", Role::Member);
    let sneaky = app
        .request(Method::POST, "/api/issues", Some(&admin("globex")))
        .bearer_auth(&mo)
        .json(&json!({"title": "t", "description": "d"}))
        .send()
        .await
        .unwrap();
    let created: Value = sneaky.json().await.unwrap();
    assert_eq!(
        (created["organizationId"].as_str(), created["createdBy"].as_str()),
        (Some("acme"), Some("mo"))
    );
    let delete = app.request(Method::DELETE, "/api/issues/1", Some(&admin("acme"))).bearer_auth(&mo).send();
    assert_problem(delete.await.unwrap(), StatusCode::FORBIDDEN).await;
}

#[tokio::test]
async fn every_unacceptable_token_is_a_401_with_a_bearer_challenge_saying_why() {
    let app = jwt_app(jwt_config()).await;
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            signed(with(valid_claims(), "exp", json!(now() - 3600)), SECRET),
            "the token has expired",
        ),
        ("not yet valid", signed(with(valid_claims(), "nbf", json!(now() + 3600)), SECRET), "not valid yet"),
        ("other audience", signed(with(valid_claims(), "aud", json!("other")), SECRET), "another audience"),
        ("no audience", signed(with(valid_claims(), "aud", Value::Null), SECRET), "lacks the aud claim"),
        (
            "other issuer",
            signed(with(valid_claims(), "iss", json!("https://evil.test")), SECRET),
            "another issuer",
        ),
        (
            "bad signature",
            signed(valid_claims(), "another secret, also long enough"),
            "signature does not verify",
        ),
        ("no exp", signed(with(valid_claims(), "exp", Value::Null), SECRET), "lacks the exp claim"),
        ("no org", signed(with(valid_claims(), "org", Value::Null), SECRET), "lacks the org claim"),
        ("no sub", signed(with(valid_claims(), "sub", Value::Null), SECRET), "lacks the sub claim"),
        ("no role", signed(with(valid_claims(), "role", Value::Null), SECRET), "lacks the role claim"),
        (
            "bad role",
            signed(with(valid_claims(), "role", json!("OWNER")), SECRET),
            "role claim must be ADMIN or MEMBER",
        ),
        ("bad org", signed(with(valid_claims(), "org", json!("a b")), SECRET), "org claim must be 1-64"),
        ("numeric org", signed(with(valid_claims(), "org", json!(7)), SECRET), "org claim must be 1-64"),
        ("garbage", "not.a.jwt".into(), "malformed"),
        (
            "other algorithm",
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS384),
                &valid_claims(),
                &EncodingKey::from_secret(SECRET.as_bytes()),
            )
            .unwrap(),
            "must be signed with HS256",
        ),
    ];
    for (case, token, why) in cases {
        let response = bearer(&app, Method::GET, "/api/issues", &token).send().await.unwrap();
        let challenge = response.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(
            challenge.starts_with("Bearer realm=\"tenantry\", error=\"invalid_token\""),
            "{case}: {challenge}"
        );
        assert!(challenge.contains(why), "{case}: {challenge}");
        let problem = assert_problem(response, StatusCode::UNAUTHORIZED).await;
        assert!(problem["detail"].as_str().unwrap().contains(why), "{case}: {problem}");
    }
    // Not a bearer token at all.
    for authorization in ["Basic YW5uOnB3", "Bearer", "Bearer "] {
        let response = app
            .request(Method::GET, "/api/issues", None)
            .header("authorization", authorization)
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["www-authenticate"], "Bearer realm=\"tenantry\"", "{authorization}");
        assert_problem(response, StatusCode::UNAUTHORIZED).await;
    }
    // The valid one passes, so the refusals above are about the tokens.
    let ok = bearer(&app, Method::GET, "/api/issues", &signed(valid_claims(), SECRET)).send().await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
}

fn openssl(args: &[&str]) {
    let output = Command::new("openssl").args(args).output().expect("openssl is installed");
    assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// A key pair made by openssl: (private PEM path, public PEM path).
fn key_pair(dir: &Path, name: &str, genpkey: &[&str]) -> (String, String) {
    let private = dir.join(format!("{name}.pem")).display().to_string();
    let public = dir.join(format!("{name}.pub.pem")).display().to_string();
    let mut args = vec!["genpkey", "-out", private.as_str()];
    args.extend_from_slice(genpkey);
    openssl(&args);
    openssl(&["pkey", "-in", &private, "-pubout", "-out", &public]);
    (private, public)
}

#[tokio::test]
async fn rs256_and_es256_tokens_verify_against_the_issuers_public_key() {
    let dir = tempdir("jwt-keys");
    let rsa = key_pair(&dir, "rsa", &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]);
    let ec = key_pair(&dir, "ec", &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]);
    let other_ec = key_pair(&dir, "other", &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]);

    for ((private, public), algorithm) in [(rsa, "RS256"), (ec, "ES256")] {
        let config = JwtConfig {
            jwt_public_key_file: Some(public.clone().into()),
            jwt_audience: Some("tenantry-api".into()),
            ..JwtConfig::default()
        };
        let app = jwt_app(config.clone()).await;
        let ann = ctx("acme", "ann", Role::Admin);
        let token = jwt::mint(&config, Some(Path::new(&private)), &ann, Duration::from_secs(60)).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(format!("{:?}", header.alg), algorithm);
        let ok = bearer(&app, Method::GET, "/api/issues", &token).send().await.unwrap();
        assert_eq!(ok.status(), StatusCode::OK, "{algorithm}");

        // Signed by someone else's key: refused.
        let forged = jwt::mint(&config, Some(Path::new(&other_ec.0)), &ann, Duration::from_secs(60)).unwrap();
        let refused = bearer(&app, Method::GET, "/api/issues", &forged).send().await.unwrap();
        assert_problem(refused, StatusCode::UNAUTHORIZED).await;
        // The classic confusion: HS256 "signed" with the public key as the secret.
        let public_pem = std::fs::read_to_string(&public).unwrap();
        let confused =
            signed(json!({"org": "acme", "sub": "ann", "role": "ADMIN", "exp": now() + 60}), &public_pem);
        let refused = bearer(&app, Method::GET, "/api/issues", &confused).send().await.unwrap();
        let problem = assert_problem(refused, StatusCode::UNAUTHORIZED).await;
        assert!(problem["detail"].as_str().unwrap().contains(algorithm), "{problem}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn jwt_mode_refuses_to_start_without_a_usable_key() {
    let build = |jwt: JwtConfig| async move {
        App::build(&Config { port: 0, auth_mode: AuthMode::Jwt, jwt, ..Config::default() }).await
    };
    let err = build(JwtConfig::default()).await.err().expect("refused");
    assert!(matches!(err, StartupError::Jwt(JwtSetupError::NoKey)), "{err}");
    let short = JwtConfig { jwt_secret: Some("short".into()), ..JwtConfig::default() };
    assert!(matches!(build(short).await.err(), Some(StartupError::Jwt(JwtSetupError::ShortSecret))));
    let missing = JwtConfig { jwt_public_key_file: Some("/nonexistent.pem".into()), ..JwtConfig::default() };
    assert!(matches!(build(missing).await.err(), Some(StartupError::Jwt(JwtSetupError::Read { .. }))));
    // A usable key but no audience: a token minted for another service would work here.
    let no_audience = JwtConfig { jwt_secret: Some(SECRET.into()), ..JwtConfig::default() };
    let err = build(no_audience).await.err().expect("refused");
    assert!(matches!(err, StartupError::Jwt(JwtSetupError::NoAudience)), "{err}");
    assert!(err.to_string().contains("JWT_AUDIENCE_OPTIONAL=1"), "{err}");
}

#[tokio::test]
async fn jwt_mode_documents_only_the_bearer_scheme() {
    let app = jwt_app(jwt_config()).await;
    let served: Value =
        app.client.get(format!("{}/openapi.json", app.address)).send().await.unwrap().json().await.unwrap();
    let schemes: Vec<&String> = served["components"]["securitySchemes"].as_object().unwrap().keys().collect();
    assert_eq!(schemes, ["bearerAuth"]);
    for item in served["paths"].as_object().unwrap().values() {
        for operation in item.as_object().unwrap().values() {
            assert_eq!(operation["security"], json!([{"bearerAuth": []}]));
        }
    }
}

/// What AUTH_MODE=jwt serves says only what that server accepts: the token. The
/// identity headers appear nowhere, neither in the document's texts and examples nor in
/// Swagger UI's page (no identity form, nothing kept across reloads).
#[tokio::test]
async fn jwt_mode_document_and_swagger_ui_speak_only_of_the_bearer_token() {
    let app = jwt_app(jwt_config()).await;
    let document =
        app.client.get(format!("{}/openapi.json", app.address)).send().await.unwrap().text().await.unwrap();
    let page = app.client.get(format!("{}/docs", app.address)).send().await.unwrap().text().await.unwrap();
    for (what, text) in [("document", &document), ("page", &page)] {
        for header in ["x-organization-id", "x-user-id", "x-user-role", "identity header"] {
            assert!(!text.to_lowercase().contains(header), "the {what} mentions {header}");
        }
    }
    assert!(page.contains(document.trim_end()), "the page shows the served document");
    assert!(!page.contains("id=\"identity"), "no identity form");
    assert!(!page.contains("persistAuthorization: true"), "the token is not kept");
    assert!(page.contains("<title>tenantry API</title>") && page.contains("href=\"/openapi.json\""));

    // What a 401 is, said about the token, with the token's example.
    let spec: Value = serde_json::from_str(&document).unwrap();
    let description = spec["info"]["description"].as_str().unwrap();
    assert!(description.contains("Every call carries `Authorization: Bearer <JWT>`"), "{description}");
    let unauthorized = &spec["paths"]["/api/issues"]["get"]["responses"]["401"];
    assert!(unauthorized["description"].as_str().unwrap().starts_with("Not authenticated: the bearer token"));
    let example = &unauthorized["content"]["application/problem+json"]["examples"]["no token"]["value"];
    let challenge = &unauthorized["headers"]["WWW-Authenticate"]["example"];
    // Exactly what the server answers a call without a token.
    let response = app.client.get(format!("{}/api/issues", app.address)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["www-authenticate"].to_str().unwrap(), challenge.as_str().unwrap());
    assert_eq!(&response.json::<Value>().await.unwrap(), example);
}

#[test]
fn the_token_subcommand_mints_what_the_server_accepts() {
    let output = Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .args(["token", "--org", "acme", "--user", "ann", "--role", "ADMIN"])
        .env("JWT_SECRET", SECRET)
        .env("JWT_AUDIENCE", "tenantry-api")
        .env("JWT_ISSUER", "https://id.example.test")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let token = String::from_utf8(output.stdout).unwrap();
    let verifier = jwt::JwtVerifier::new(&jwt_config()).unwrap();
    assert_eq!(verifier.verify(token.trim()).unwrap(), ctx("acme", "ann", Role::Admin));
}

/// A token whose payload is exactly `payload` (byte for byte, so it may repeat a key),
/// signed with HS256 here rather than by the library under test.
fn signed_text(payload: &str, secret: &str) -> String {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    use hmac::{Hmac, KeyInit, Mac};
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

#[tokio::test]
async fn a_token_whose_claims_name_a_key_twice_is_refused_whichever_value_comes_last() {
    let app = jwt_app(jwt_config()).await;
    let rest = format!(
        r#""sub":"ann","role":"ADMIN","exp":{},"aud":"tenantry-api","iss":"https://id.example.test""#,
        now() + 600
    );
    // The control: the same bytes without the repeat are accepted.
    let plain = signed_text(&format!(r#"{{"org":"globex",{rest}}}"#), SECRET);
    assert_eq!(
        bearer(&app, Method::GET, "/api/issues", &plain).send().await.unwrap().status(),
        StatusCode::OK
    );
    for payload in [
        format!(r#"{{"org":"acme","org":"globex",{rest}}}"#),
        format!(r#"{{"org":"globex",{rest},"role":"MEMBER"}}"#),
        format!(r#"{{"org":"acme",{rest},"exp":{}}}"#, now() + 999_999),
    ] {
        let token = signed_text(&payload, SECRET);
        let response = bearer(&app, Method::GET, "/api/issues", &token).send().await.unwrap();
        let challenge = response.headers()["www-authenticate"].to_str().unwrap().to_owned();
        let problem = assert_problem(response, StatusCode::UNAUTHORIZED).await;
        // jsonwebtoken itself refuses a repeated registered claim (exp) as malformed.
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains("a key twice") || detail == "the token is malformed", "{payload}: {problem}");
        assert!(challenge.contains("invalid_token"), "{challenge}");
    }
}

#[tokio::test]
async fn a_token_that_lives_longer_than_jwt_max_ttl_seconds_is_refused() {
    let app = jwt_app(jwt_config()).await;
    let claims = |iat: Option<i64>, exp: i64| {
        let claims = with(valid_claims(), "exp", exp.into());
        with(claims, "iat", iat.map_or(Value::Null, Value::from))
    };
    let day = 86_400;
    let accepted = [
        claims(Some(now()), now() + day),
        claims(None, now() + day - 60),
        claims(Some(now() - day + 120), now() + 60),
    ];
    for claims in accepted {
        let token = signed(claims.clone(), SECRET);
        let response = bearer(&app, Method::GET, "/api/issues", &token).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{claims}");
    }
    let refused = [
        claims(Some(now()), now() + day + 1),
        claims(None, now() + day + 120),
        // Claiming to be issued in the future does not shorten a long life.
        claims(Some(now() + 2 * day - 10), now() + 2 * day),
        claims(Some(now() - 10 * day), now() + 60),
    ];
    for claims in refused {
        let token = signed(claims.clone(), SECRET);
        let problem = assert_problem(
            bearer(&app, Method::GET, "/api/issues", &token).send().await.unwrap(),
            StatusCode::UNAUTHORIZED,
        )
        .await;
        assert!(problem["detail"].as_str().unwrap().contains("JWT_MAX_TTL_SECONDS"), "{claims}: {problem}");
    }
    // 0 lifts the cap; a smaller cap refuses what the default took.
    let uncapped = jwt_app(JwtConfig { jwt_max_ttl_seconds: 0, ..jwt_config() }).await;
    let year = signed(claims(Some(now()), now() + 365 * day), SECRET);
    assert_eq!(
        bearer(&uncapped, Method::GET, "/api/issues", &year).send().await.unwrap().status(),
        StatusCode::OK
    );
    let minute = jwt_app(JwtConfig { jwt_max_ttl_seconds: 60, ..jwt_config() }).await;
    let ten_minutes = signed(claims(Some(now()), now() + 600), SECRET);
    let response = bearer(&minute, Method::GET, "/api/issues", &ten_minutes).send().await.unwrap();
    assert_problem(response, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn without_jwt_audience_tokens_for_any_audience_work_only_when_that_is_asked_for() {
    let config = JwtConfig { jwt_audience: None, jwt_audience_optional: true, ..jwt_config() };
    let app = jwt_app(config).await;
    for audience in [Value::Null, json!("some-other-service")] {
        let token = signed(with(valid_claims(), "aud", audience.clone()), SECRET);
        let response = bearer(&app, Method::GET, "/api/issues", &token).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{audience}");
    }
}
