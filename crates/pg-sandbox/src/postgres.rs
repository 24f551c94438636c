//! A private PostgreSQL cluster run from the locally installed server binaries: the
//! zero-setup database of `tenantry serve` without DATABASE_URL, and of the test suite.
//!
//! - Binaries: `initdb` and `postgres` from PATH, then `pg_config --bindir`, then the
//!   newest `/usr/lib/postgresql/*/bin` (Debian and Ubuntu keep them there).
//! - PostgreSQL refuses to run as root; as root we run it as the `postgres` user.
//! - The server listens on 127.0.0.1 only and trusts it (a development cluster).
//! - The server is our child and dies with us (SIGINT, its fast shutdown; see `child`).

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Read, Seek, SeekFrom},
    net::TcpListener,
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use crate::child::Supervised;

/// The superuser initdb creates.
pub const SUPERUSER: &str = "postgres";

#[derive(Debug, thiserror::Error)]
pub enum LocalPostgresError {
    #[error(
        "PostgreSQL server binaries (initdb, postgres) not found on PATH, via `pg_config \
         --bindir` or in /usr/lib/postgresql/*/bin. Install them (Debian/Ubuntu: `apt-get \
         install -y postgresql`) or set DATABASE_URL to a server you run."
    )]
    BinariesNotFound,
    #[error(
        "running as root, PostgreSQL must run as an unprivileged user, but there is no \
         `postgres` user (installing the postgresql package creates it)"
    )]
    NoUnprivilegedUser,
    #[error("{action} failed: {source}")]
    Io { action: String, source: io::Error },
    #[error("initdb failed ({status}):\n{output}")]
    Initdb { status: ExitStatus, output: String },
    #[error("PostgreSQL did not start within {waited:?}; the end of {log}:\n{tail}")]
    NotReady { waited: Duration, log: String, tail: String },
    #[error("PostgreSQL exited during start-up ({status}); the end of {log}:\n{tail}")]
    Exited { status: ExitStatus, log: String, tail: String },
}

pub(crate) fn io_error(action: impl Into<String>) -> impl FnOnce(io::Error) -> LocalPostgresError {
    let action = action.into();
    move |source| LocalPostgresError::Io { action, source }
}

/// How to run the cluster.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Holds `pgdata/` (the cluster, reused when present) and `postgres.log`.
    pub dir: PathBuf,
    /// Port on 127.0.0.1; 0: the one kept in `dir/port`, chosen once (a free one).
    pub port: u16,
    /// Trade durability for speed (fsync off, ...): for throw-away test clusters.
    pub ephemeral: bool,
    /// Also listen on a Unix socket in `dir/socket` on which this role may not log in
    /// (its first pg_hba.conf line rejects it): for tests of a login that fails.
    pub socket_rejecting: Option<String>,
    /// More `-c name=value` settings for the server (e.g. `ssl=on`).
    pub settings: Vec<String>,
    /// The whole of pg_hba.conf, when it should not be the trusting default (written
    /// before each start).
    pub hba: Option<String>,
}

/// A running cluster; stopped (fast shutdown) when dropped.
#[derive(Debug)]
pub struct LocalPostgres {
    data_dir: PathBuf,
    log: PathBuf,
    port: u16,
    server: Supervised,
    bin_dir: PathBuf,
    socket_dir: Option<PathBuf>,
}

impl LocalPostgres {
    /// Creates the cluster if `dir` holds none yet, starts it and waits until it accepts
    /// connections.
    pub fn start(options: &Options) -> Result<LocalPostgres, LocalPostgresError> {
        let bin_dir = find_bin_dir().ok_or(LocalPostgresError::BinariesNotFound)?;
        let run_as = unprivileged_user()?;
        // Absolute: the server runs with another working directory.
        let wanted = std::path::absolute(&options.dir)
            .map_err(io_error(format!("resolving {}", options.dir.display())))?;
        let dir = cluster_dir(&wanted, run_as);
        if dir != wanted {
            tracing::warn!(
                wanted = %wanted.display(),
                using = %dir.display(),
                "the postgres user cannot reach the data directory; using another"
            );
        }
        let data_dir = dir.join("pgdata");
        let log = dir.join("postgres.log");
        fs::create_dir_all(&dir).map_err(io_error(format!("creating {}", dir.display())))?;
        if !data_dir.join("PG_VERSION").exists() {
            init_cluster(&bin_dir, &data_dir, run_as, options.ephemeral)?;
        }
        let port = match options.port {
            0 => stable_port(&dir)?,
            port => port,
        };

        let log_file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(io_error(format!("opening {}", log.display())))?;
        let log_start = log_file.metadata().map(|m| m.len()).unwrap_or(0);
        if let Some(hba) = &options.hba {
            let path = data_dir.join("pg_hba.conf");
            fs::write(&path, hba).map_err(io_error(format!("writing {}", path.display())))?;
        }
        let socket_dir = options.socket_rejecting.as_ref().map(|_| dir.join("socket"));
        let sockets = match (&socket_dir, &options.socket_rejecting) {
            (Some(socket_dir), Some(role)) => {
                prepare_socket(socket_dir, &data_dir, run_as, role)?;
                format!("unix_socket_directories={}", socket_dir.display())
            }
            _ => "unix_socket_directories=".into(),
        };
        let mut command = Command::new(bin_dir.join("postgres"));
        command
            .arg("-D")
            .arg(&data_dir)
            .args(["-p", &port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1", "-c", &sockets])
            .args(["-c", "max_connections=300"])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().map_err(io_error("opening the log"))?)
            .stderr(log_file);
        if options.ephemeral {
            for setting in ["fsync=off", "synchronous_commit=off", "full_page_writes=off"] {
                command.args(["-c", setting]);
            }
        }
        for setting in &options.settings {
            command.args(["-c", setting]);
        }
        as_user(&mut command, run_as);
        // SIGINT is PostgreSQL's fast shutdown: disconnect clients, checkpoint, exit.
        let server = Supervised::spawn(command, libc::SIGINT, Duration::from_secs(30))
            .map_err(io_error("starting postgres"))?;
        let server = LocalPostgres { data_dir, log, port, server, bin_dir, socket_dir };
        server.wait_until_ready(log_start)?;
        Ok(server)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// A connection URL for `user` on `database`.
    pub fn url(&self, user: &str, database: &str) -> String {
        format!("postgresql://{user}@127.0.0.1:{}/{database}", self.port)
    }

    /// A connection URL through the Unix socket ([`Options::socket_rejecting`]), if any.
    pub fn socket_url(&self, user: &str, database: &str) -> Option<String> {
        let dir = self.socket_dir.as_ref()?;
        Some(format!("postgresql://{user}@/{database}?host={}&port={}", dir.display(), self.port))
    }

    /// Waits for the server's own "ready" mark in postmaster.pid, the signal `pg_ctl -w`
    /// waits for too.
    fn wait_until_ready(&self, log_start: u64) -> Result<(), LocalPostgresError> {
        let waited = Duration::from_secs(60);
        let deadline = Instant::now() + waited;
        let pid_file = self.data_dir.join("postmaster.pid");
        loop {
            if let Some(status) = self.server.try_exit_status() {
                return Err(LocalPostgresError::Exited {
                    status,
                    log: self.log.display().to_string(),
                    tail: log_tail(&self.log, log_start),
                });
            }
            if let Ok(text) = fs::read_to_string(&pid_file) {
                let lines: Vec<&str> = text.lines().collect();
                if lines.first().and_then(|p| p.trim().parse().ok()) == Some(self.server.pid())
                    && lines.get(7).is_some_and(|status| status.trim() == "ready")
                {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(LocalPostgresError::NotReady {
                    waited,
                    log: self.log.display().to_string(),
                    tail: log_tail(&self.log, log_start),
                });
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

fn init_cluster(
    bin_dir: &Path,
    data_dir: &Path,
    run_as: Option<(u32, u32)>,
    ephemeral: bool,
) -> Result<(), LocalPostgresError> {
    fs::create_dir_all(data_dir).map_err(io_error(format!("creating {}", data_dir.display())))?;
    fs::set_permissions(data_dir, fs::Permissions::from_mode(0o700))
        .map_err(io_error("restricting the data directory"))?;
    if let Some((uid, gid)) = run_as {
        std::os::unix::fs::chown(data_dir, Some(uid), Some(gid))
            .map_err(io_error(format!("giving {} to the postgres user", data_dir.display())))?;
    }
    let mut command = Command::new(bin_dir.join("initdb"));
    command
        .arg("-D")
        .arg(data_dir)
        .args(["-U", SUPERUSER, "--auth=trust", "--encoding=UTF8", "--locale=C"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if ephemeral {
        command.arg("--no-sync");
    }
    as_user(&mut command, run_as);
    let output = command.output().map_err(io_error("running initdb"))?;
    if !output.status.success() {
        return Err(LocalPostgresError::Initdb {
            status: output.status,
            output: String::from_utf8_lossy(&[output.stdout, output.stderr].concat()).into_owned(),
        });
    }
    Ok(())
}

/// The socket directory (the server's user must create the socket there) and the
/// pg_hba.conf line, first of all, that refuses `rejected_role` on it.
fn prepare_socket(
    socket_dir: &Path,
    data_dir: &Path,
    run_as: Option<(u32, u32)>,
    rejected_role: &str,
) -> Result<(), LocalPostgresError> {
    fs::create_dir_all(socket_dir).map_err(io_error(format!("creating {}", socket_dir.display())))?;
    if let Some((uid, gid)) = run_as {
        std::os::unix::fs::chown(socket_dir, Some(uid), Some(gid))
            .map_err(io_error(format!("giving {} to the postgres user", socket_dir.display())))?;
    }
    let line = format!("local all {rejected_role} reject\n");
    let line = line.as_str();
    let hba = data_dir.join("pg_hba.conf");
    let current = fs::read_to_string(&hba).map_err(io_error(format!("reading {}", hba.display())))?;
    if !current.starts_with(line) {
        fs::write(&hba, format!("{line}{current}"))
            .map_err(io_error(format!("writing {}", hba.display())))?;
    }
    Ok(())
}

pub(crate) fn as_user(command: &mut Command, run_as: Option<(u32, u32)>) {
    if let Some((uid, gid)) = run_as {
        // std drops root's supplementary groups when it switches uid.
        command.uid(uid).gid(gid).current_dir("/");
    }
}

/// As root: the `postgres` user's uid and gid. Otherwise none: run as ourselves.
pub fn unprivileged_user() -> Result<Option<(u32, u32)>, LocalPostgresError> {
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let passwd = fs::read_to_string("/etc/passwd").map_err(io_error("reading /etc/passwd"))?;
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&"postgres"))
        .and_then(|fields| Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?)))
        .map(Some)
        .ok_or(LocalPostgresError::NoUnprivilegedUser)
}

/// The first directory holding both `initdb` and `postgres`, links resolved.
pub fn find_bin_dir() -> Option<PathBuf> {
    let from_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    let mut debian: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    debian.sort_by_key(|(version, _)| std::cmp::Reverse(*version));

    from_path.into_iter().chain(from_pg_config).chain(debian.into_iter().map(|(_, dir)| dir)).find_map(
        |dir| {
            let initdb = fs::canonicalize(dir.join("initdb")).ok()?;
            let bin_dir = initdb.parent()?.to_path_buf();
            bin_dir.join("postgres").is_file().then_some(bin_dir)
        },
    )
}

/// Where the cluster of `wanted` lives: there, or, as root in a directory the postgres
/// user cannot reach (say, under /root), in one it can, one per project.
fn cluster_dir(wanted: &Path, run_as: Option<(u32, u32)>) -> PathBuf {
    match run_as {
        Some((uid, gid)) if !reachable_by(wanted, uid, gid) => std::env::temp_dir().join(stable_name(wanted)),
        _ => wanted.to_owned(),
    }
}

/// The cluster's port, chosen once and kept in `dir/port`, so a `psql` URL keeps working
/// across restarts; when it is taken, another is chosen, kept and logged.
fn stable_port(dir: &Path) -> Result<u16, LocalPostgresError> {
    let file = dir.join("port");
    let stored = fs::read_to_string(&file).ok().and_then(|text| text.trim().parse::<u16>().ok());
    if let Some(port) = stored
        && TcpListener::bind(("127.0.0.1", port)).is_ok()
    {
        return Ok(port);
    }
    let port = free_port().map_err(io_error("finding a free port"))?;
    if let Some(taken) = stored {
        tracing::warn!(taken, port, "the private cluster's port is in use; it uses another from now on");
    }
    fs::write(&file, format!("{port}\n")).map_err(io_error(format!("writing {}", file.display())))?;
    Ok(port)
}

/// The port and data directory of the cluster kept in `dir` when a server runs on it now
/// (its postmaster.pid names a live process that says it is ready): for a tool that works
/// next to a running instance, such as `tenantry reset`. A pid file left by a crash may
/// name a process that reused the pid: check `data_directory` once connected.
pub fn running(dir: &Path) -> Option<(u16, PathBuf)> {
    let wanted = std::path::absolute(dir).ok()?;
    let dir = cluster_dir(&wanted, unprivileged_user().ok()?);
    let text = fs::read_to_string(dir.join("pgdata").join("postmaster.pid")).ok()?;
    let lines: Vec<&str> = text.lines().collect();
    let pid: libc::pid_t = lines.first()?.trim().parse().ok()?;
    let port = lines.get(3)?.trim().parse().ok()?;
    // SAFETY: signal 0 only checks that the process exists.
    let alive = unsafe { libc::kill(pid, 0) } == 0;
    let data_dir = PathBuf::from(lines.get(1)?.trim());
    (alive && lines.get(7).is_some_and(|status| status.trim() == "ready")).then_some((port, data_dir))
}

pub(crate) fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The log written since `from`, at most its last 4 KiB.
pub(crate) fn log_tail(log: &Path, from: u64) -> String {
    let mut text = String::new();
    if let Ok(mut file) = File::open(log) {
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let start = from.max(len.saturating_sub(4096));
        let _ = file.seek(SeekFrom::Start(start));
        let _ = file.read_to_string(&mut text);
    }
    text
}

/// Whether `path` names something a `psql` user would recognise (for messages).
pub fn display(path: &Path) -> String {
    let cwd = std::env::current_dir().unwrap_or_default();
    path.strip_prefix(&cwd).unwrap_or(path).display().to_string()
}

/// Whether a process with `uid`/`gid` can walk down to the absolute `path` (every
/// existing ancestor searchable by it).
fn reachable_by(path: &Path, uid: u32, gid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    path.ancestors().filter_map(|dir| fs::metadata(dir).ok()).all(|meta| {
        let mode = meta.mode();
        (meta.uid() == uid && mode & 0o100 != 0)
            || (meta.gid() == gid && mode & 0o010 != 0)
            || mode & 0o001 != 0
    })
}

/// A stable directory name for the absolute `path` (its FNV-1a hash).
fn stable_name(path: &Path) -> String {
    let hash = path
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3));
    format!("tenantry-{hash:016x}")
}
