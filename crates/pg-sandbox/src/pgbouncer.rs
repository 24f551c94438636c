//! A private PgBouncer in transaction-pooling mode in front of a [`LocalPostgres`], for the
//! test suite and the load test (`bench/pgbouncer`). The service never starts one: in
//! production PgBouncer is yours to run; this is the same program with the settings the
//! README recommends.
//!
//! - Binary: `pgbouncer` on PATH, else Debian's `/usr/sbin/pgbouncer`.
//! - PgBouncer refuses to run as root, like PostgreSQL: as root it runs as `postgres`.
//! - It listens on 127.0.0.1 and trusts it (as the cluster does), and dies with us
//!   (SIGTERM, its immediate shutdown; see `child`).
//! - `pool_mode = transaction`: a server connection serves one client for one
//!   transaction, then the next client. Only transaction-local state is safe there.
//!   PgBouncer before 1.21 does not track named prepared statements, so clients must send
//!   unnamed ones (DATABASE_STATEMENTS=unnamed); see [`supports_prepared_statements`].

use std::{
    fs,
    io::Write,
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use crate::{
    child::Supervised,
    postgres::{
        LocalPostgres, LocalPostgresError, SUPERUSER, as_user, free_port, io_error, log_tail,
        unprivileged_user,
    },
};

#[derive(Debug, thiserror::Error)]
pub enum LocalPgBouncerError {
    #[error("pgbouncer is not installed (Debian/Ubuntu: apt-get install -y pgbouncer)")]
    NotInstalled,
    #[error(transparent)]
    Setup(#[from] LocalPostgresError),
    #[error("pgbouncer exited during start-up ({status}); the end of {log}:\n{tail}")]
    Exited { status: ExitStatus, log: String, tail: String },
    #[error("pgbouncer did not listen within {waited:?}; the end of {log}:\n{tail}")]
    NotReady { waited: Duration, log: String, tail: String },
}

/// How to run it.
#[derive(Debug, Clone)]
pub struct Options {
    /// Holds the configuration, the user list, the log and the pid file.
    pub dir: PathBuf,
    /// Server connections per database and user, and at most per database
    /// (`default_pool_size` and `max_db_connections`).
    pub pool_size: u32,
    /// Client connections it accepts (`max_client_conn`).
    pub max_clients: u32,
    /// The roles that may log in through it, besides the superuser.
    pub users: Vec<String>,
}

/// A running PgBouncer; stopped when dropped.
#[derive(Debug)]
pub struct LocalPgBouncer {
    port: u16,
    log: PathBuf,
    bouncer: Supervised,
}

/// The installed PgBouncer, if any.
pub fn find_binary() -> Option<PathBuf> {
    let from_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).map(|dir| dir.join("pgbouncer")).collect::<Vec<_>>())
        .unwrap_or_default();
    from_path.into_iter().chain([PathBuf::from("/usr/sbin/pgbouncer")]).find(|path| path.is_file())
}

/// The installed PgBouncer's version, e.g. `(1, 18)`.
pub fn version() -> Option<(u32, u32)> {
    let output = Command::new(find_binary()?).arg("--version").output().ok()?;
    // "PgBouncer 1.18.0\nlibevent ..."
    let text = String::from_utf8_lossy(&output.stdout);
    let number = text.lines().next()?.strip_prefix("PgBouncer ")?;
    let mut parts = number.split('.').map(|part| part.parse().ok());
    Some((parts.next()??, parts.next()??))
}

/// Whether this PgBouncer version can carry named prepared statements across server
/// connections in transaction mode (`max_prepared_statements`, added in 1.21). Older
/// ones need DATABASE_STATEMENTS=unnamed.
pub fn supports_prepared_statements(version: (u32, u32)) -> bool {
    version >= (1, 21)
}

impl LocalPgBouncer {
    /// Writes the configuration, starts PgBouncer in front of `pg` (every database, by
    /// its own name) and waits until it listens.
    pub fn start(pg: &LocalPostgres, options: &Options) -> Result<LocalPgBouncer, LocalPgBouncerError> {
        let binary = find_binary().ok_or(LocalPgBouncerError::NotInstalled)?;
        let run_as = unprivileged_user()?;
        let dir = std::path::absolute(&options.dir).map_err(io_error("resolving the PgBouncer directory"))?;
        fs::create_dir_all(&dir).map_err(io_error(format!("creating {}", dir.display())))?;
        let port = free_port().map_err(io_error("finding a free port"))?;
        let log = dir.join("pgbouncer.log");
        let config = dir.join("pgbouncer.ini");
        let users = dir.join("userlist.txt");
        let allowed: String =
            options.users.iter().chain([&SUPERUSER.to_owned()]).map(|u| format!("\"{u}\" \"\"\n")).collect();
        write(&users, &allowed)?;
        let prepared = match version() {
            // Named statements are tracked per client and re-prepared where needed.
            Some(version) if supports_prepared_statements(version) => "max_prepared_statements = 200\n",
            _ => "",
        };
        write(
            &config,
            &format!(
                "[databases]\n\
                 * = host=127.0.0.1 port={pg_port}\n\
                 \n\
                 [pgbouncer]\n\
                 listen_addr = 127.0.0.1\n\
                 listen_port = {port}\n\
                 unix_socket_dir =\n\
                 auth_type = trust\n\
                 auth_file = {users}\n\
                 admin_users = {SUPERUSER}\n\
                 pool_mode = transaction\n\
                 default_pool_size = {pool}\n\
                 max_db_connections = {pool}\n\
                 max_client_conn = {clients}\n\
                 {prepared}\
                 logfile = {log}\n\
                 pidfile = {pid}\n",
                pg_port = pg.port(),
                users = users.display(),
                pool = options.pool_size,
                clients = options.max_clients,
                log = log.display(),
                pid = dir.join("pgbouncer.pid").display(),
            ),
        )?;
        if let Some((uid, gid)) = run_as {
            for path in [&dir, &config, &users] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid))
                    .map_err(io_error(format!("giving {} to the postgres user", path.display())))?;
            }
        }
        let log_start = fs::metadata(&log).map(|m| m.len()).unwrap_or(0);

        let mut command = Command::new(binary);
        command.arg(&config).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        // Its own file descriptor limit must cover max_client_conn plus server connections.
        raise_open_files_limit(options.max_clients as u64 + options.pool_size as u64 + 64);
        as_user(&mut command, run_as);
        // SIGTERM: PgBouncer's immediate shutdown (SIGINT would wait for clients).
        let bouncer = Supervised::spawn(command, libc::SIGTERM, Duration::from_secs(10))
            .map_err(io_error("starting pgbouncer"))?;
        let bouncer = LocalPgBouncer { port, log, bouncer };
        bouncer.wait_until_listening(log_start)?;
        Ok(bouncer)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection URL for `user` on `database`, through PgBouncer.
    pub fn url(&self, user: &str, database: &str) -> String {
        format!("postgresql://{user}@127.0.0.1:{}/{database}", self.port)
    }

    /// The admin console (`show pools`, `show servers`, ...), as the superuser.
    pub fn admin_url(&self) -> String {
        self.url(SUPERUSER, "pgbouncer")
    }

    fn wait_until_listening(&self, log_start: u64) -> Result<(), LocalPgBouncerError> {
        let waited = Duration::from_secs(20);
        let deadline = Instant::now() + waited;
        loop {
            if let Some(status) = self.bouncer.try_exit_status() {
                let log = self.log.display().to_string();
                return Err(LocalPgBouncerError::Exited {
                    status,
                    tail: log_tail(&self.log, log_start),
                    log,
                });
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let log = self.log.display().to_string();
                return Err(LocalPgBouncerError::NotReady {
                    waited,
                    tail: log_tail(&self.log, log_start),
                    log,
                });
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

fn write(path: &Path, text: &str) -> Result<(), LocalPgBouncerError> {
    let mut file = fs::File::create(path).map_err(io_error(format!("writing {}", path.display())))?;
    file.write_all(text.as_bytes()).map_err(io_error(format!("writing {}", path.display())))?;
    Ok(())
}

/// Children inherit our soft limit on open files; raise it towards the hard limit so
/// PgBouncer can hold `wanted` sockets.
fn raise_open_files_limit(wanted: u64) {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain system calls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < wanted {
            limit.rlim_cur = wanted.min(limit.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
