//! TLS to PostgreSQL with libpq's `sslmode`s, against a real cluster with `ssl = on` and a
//! `hostssl`-only pg_hba.conf, its certificate issued by a throw-away CA this test makes
//! with the `openssl` command (for `localhost` only: webpki reads the subject alternative
//! names, never the CN). The service starts, or refuses to, saying why.

use std::{path::Path, process::Command};

use pg_sandbox::postgres::{LocalPostgres, Options, SUPERUSER, unprivileged_user};
use tenantry::{App, config::Config, db};

use super::startup::tempdir;

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running openssl (Debian: apt-get install -y openssl)");
    assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// A CA (`{name}.crt`, `{name}.key`) of its own.
fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-nodes",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

/// A cluster serving TLS (only) with a certificate for `localhost` signed by `ca.crt`.
pub fn start_tls_cluster(dir: &Path) -> LocalPostgres {
    make_ca(dir, "ca");
    make_ca(dir, "other-ca");
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-nodes",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=not-a-name-webpki-reads",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
    // PostgreSQL reads its key only if nobody else can.
    let key = dir.join("server.key");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    if let Some((uid, gid)) = unprivileged_user().unwrap() {
        std::os::unix::fs::chown(&key, Some(uid), Some(gid)).unwrap();
    }
    let options = Options {
        dir: dir.join("cluster"),
        ephemeral: true,
        settings: vec![
            "ssl=on".into(),
            format!("ssl_cert_file={}", dir.join("server.crt").display()),
            format!("ssl_key_file={}", key.display()),
        ],
        hba: Some("hostssl all all 127.0.0.1/32 trust\n".into()),
        ..Default::default()
    };
    LocalPostgres::start(&options).expect("a cluster with ssl = on")
}

/// Starts the service on `DATABASE_URL=url` (requests log in as tenantry_api with the same
/// TLS settings); the error says why it did not.
async fn start(url: String) -> Result<App, String> {
    let config = Config { port: 0, database_url: Some(url), pool_size: 2, ..Config::default() };
    App::build(&config).await.map_err(|err| {
        let mut text = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(cause) = source {
            text.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        text
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_to_postgresql_use_tls_as_sslmode_and_sslrootcert_say() {
    let dir = tempdir("tls");
    let pg = tokio::task::block_in_place(|| start_tls_cluster(&dir));
    let port = pg.port();
    let ca = dir.join("ca.crt").display().to_string();
    let other_ca = dir.join("other-ca.crt").display().to_string();
    let url =
        |host: &str, options: &str| format!("postgresql://{SUPERUSER}@{host}:{port}/postgres?{options}");

    // require: encrypted, nothing checked. Every connection the service holds is TLS.
    let app = start(url("127.0.0.1", "sslmode=require")).await.expect("sslmode=require starts");
    let owner =
        db::connect_owner(&db::Endpoint::parse(&url("127.0.0.1", "sslmode=require")).unwrap()).await.unwrap();
    let row = owner
        .query_one(
            "select count(*) filter (where s.ssl), count(*) filter (where not s.ssl)
             from pg_stat_activity a join pg_stat_ssl s using (pid) where a.usename = 'tenantry_api'",
            &[],
        )
        .await
        .unwrap();
    let (encrypted, plain): (i64, i64) = (row.get(0), row.get(1));
    assert!(encrypted >= 1 && plain == 0, "request connections: {encrypted} with TLS, {plain} without");
    drop(app);

    // verify-full with the CA that signed it, by the name in the certificate.
    start(url("localhost", &format!("sslmode=verify-full&sslrootcert={ca}"))).await.expect("verify-full");
    // verify-ca checks the chain only: 127.0.0.1 is not in the certificate, and that is fine.
    start(url("127.0.0.1", &format!("sslmode=verify-ca&sslrootcert={ca}"))).await.expect("verify-ca");
    // require with a CA is verify-ca, as in libpq.
    start(url("127.0.0.1", &format!("sslmode=require&sslrootcert={ca}"))).await.expect("require + CA");

    let refused = start(url("127.0.0.1", &format!("sslmode=verify-full&sslrootcert={ca}"))).await.err();
    let refused = refused.expect("verify-full refuses a name the certificate does not have");
    assert!(refused.contains("not for 127.0.0.1 (it names localhost)"), "{refused}");

    let refused = start(url("localhost", &format!("sslmode=verify-full&sslrootcert={other_ca}"))).await.err();
    let refused = refused.expect("verify-full refuses a certificate another CA signed");
    assert!(refused.contains(&format!("not signed by a CA in sslrootcert={other_ca}")), "{refused}");
    let refused = start(url("127.0.0.1", &format!("sslmode=require&sslrootcert={other_ca}"))).await.err();
    assert!(refused.is_some_and(|r| r.contains("not signed by a CA")), "require with a CA checks the chain");

    // The server takes TLS only: a plain connection is turned away by pg_hba.conf.
    let refused = start(url("127.0.0.1", "sslmode=disable")).await.err().expect("sslmode=disable is refused");
    assert!(refused.contains("no encryption"), "{refused}");

    // What the service itself refuses before connecting.
    let refused = start(url("localhost", "sslmode=require&sslrootcert=system")).await.err().unwrap();
    assert!(refused.contains("needs sslmode=verify-full"), "{refused}");
    let refused = start(url("localhost", "sslmode=require&sslcert=client.crt")).await.err().unwrap();
    assert!(refused.contains("sslcert is not supported yet"), "{refused}");
}
