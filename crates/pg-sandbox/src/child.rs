//! A server process supervised from a thread that lives exactly as long as it: the child
//! gets a chosen signal when that thread ends, so also when this process ends, however it
//! ends; dropping the handle stops it (the signal, then SIGKILL after a grace period).

use std::{
    io,
    os::unix::process::CommandExt,
    path::Path,
    process::{Command, ExitStatus},
    sync::{Mutex, mpsc},
    thread,
    time::Duration,
};

#[derive(Debug)]
pub(crate) struct Supervised {
    pid: libc::pid_t,
    /// Receives the exit status once; `None` after it was received (the pid may then
    /// belong to another process: never signal it again).
    exited: Mutex<Option<mpsc::Receiver<io::Result<ExitStatus>>>>,
    /// The signal that stops it (PostgreSQL: SIGINT, a fast shutdown; PgBouncer: SIGTERM).
    stop: libc::c_int,
    /// How long it may take to stop before SIGKILL.
    grace: Duration,
}

impl Supervised {
    /// Starts `command`; the child gets `stop` when the supervising thread (or this
    /// process) ends.
    pub(crate) fn spawn(mut command: Command, stop: libc::c_int, grace: Duration) -> io::Result<Supervised> {
        let parent = std::process::id() as libc::pid_t;
        let program =
            Path::new(command.get_program()).file_name().unwrap_or_default().to_string_lossy().into_owned();
        // SAFETY: the closure only makes async-signal-safe calls (prctl, getppid).
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, stop) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The parent may have died before prctl took effect.
                if libc::getppid() != parent {
                    return Err(io::Error::other("parent exited during start-up"));
                }
                Ok(())
            });
        }
        let (started_tx, started_rx) = mpsc::channel();
        let (exited_tx, exited_rx) = mpsc::channel();
        thread::Builder::new().name(format!("{program}-keeper")).spawn(move || match command.spawn() {
            Ok(mut child) => {
                let _ = started_tx.send(Ok(child.id() as libc::pid_t));
                let _ = exited_tx.send(child.wait());
            }
            Err(err) => {
                let _ = started_tx.send(Err(err));
            }
        })?;
        let pid = started_rx.recv().map_err(|_| io::Error::other("keeper thread ended"))??;
        Ok(Supervised { pid, exited: Mutex::new(Some(exited_rx)), stop, grace })
    }

    pub(crate) fn pid(&self) -> libc::pid_t {
        self.pid
    }

    /// The exit status if it has exited (and the pid is no longer its).
    pub(crate) fn try_exit_status(&self) -> Option<ExitStatus> {
        let mut exited = self.exited.lock().unwrap_or_else(|e| e.into_inner());
        let status = exited.as_ref()?.try_recv().ok()?;
        *exited = None;
        Some(status.unwrap_or_default())
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        let Some(exited) = self.exited.get_mut().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        unsafe { libc::kill(self.pid, self.stop) };
        if exited.recv_timeout(self.grace).is_err() {
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            let _ = exited.recv_timeout(Duration::from_secs(5));
        }
    }
}
