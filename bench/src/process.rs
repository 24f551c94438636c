//! Stopping the service processes the drivers start.

use std::{
    process::Child,
    time::{Duration, Instant},
};

/// SIGTERM, so the service shuts down gracefully; killed if it has not exited in 15 s.
pub fn stop_gracefully(child: &mut Child) {
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}
