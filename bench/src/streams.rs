//! Live activity streams (`GET /api/activity/stream`) as a benchmark's clients open them:
//! one task per stream, reading every event as it arrives, on a thread and runtime of
//! their own (the drivers block their main thread on wrk, or pace writes there).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

/// Called for every event: the stream's number, its organization, the event's `data`
/// line, and when it arrived.
pub type OnEvent = Arc<dyn Fn(usize, &str, &str, Instant) + Send + Sync>;

/// Open streams; dropping this closes them all.
pub struct Listeners {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    /// Events received so far, over all streams.
    pub events: Arc<AtomicU64>,
}

impl Listeners {
    /// Opens `per_org` streams for each organization of `orgs` against the service at
    /// `address` (each as its own MEMBER), and returns once every stream has sent its
    /// opening block.
    pub fn open(
        address: &str,
        orgs: &[String],
        per_org: usize,
        on_event: Option<OnEvent>,
    ) -> Result<Listeners, String> {
        let streams: Vec<(usize, String, String)> = orgs
            .iter()
            .flat_map(|org| (0..per_org).map(move |n| (org.clone(), format!("listener-{n}"))))
            .enumerate()
            .map(|(i, (org, user))| (i, org, user))
            .collect();
        let total = streams.len();
        let events = Arc::new(AtomicU64::new(0));
        let (opened, opened_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let address = address.to_owned();
        let counter = events.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                // One connection per stream: nothing is shared or pooled between them.
                let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
                for (number, org, user) in streams {
                    let (client, address, opened, counter, on_event) =
                        (client.clone(), address.clone(), opened.clone(), counter.clone(), on_event.clone());
                    tokio::spawn(async move {
                        let result =
                            read(&client, &address, number, &org, &user, &opened, &counter, on_event).await;
                        if let Err(err) = result {
                            let _ = opened.send(Err(format!("stream {number} of {org}: {err}")));
                        }
                    });
                }
                let _ = stopped.await;
            });
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        for _ in 0..total {
            let left = deadline.saturating_duration_since(Instant::now());
            match opened_rx.recv_timeout(left) {
                Ok(Ok(())) => {}
                Ok(Err(err)) => return Err(err),
                Err(_) => return Err(format!("the {total} streams did not all open within 120 s")),
            }
        }
        Ok(Listeners { stop: Some(stop), thread: Some(thread), events })
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn read(
    client: &reqwest::Client,
    address: &str,
    number: usize,
    org: &str,
    user: &str,
    opened: &std::sync::mpsc::Sender<Result<(), String>>,
    counter: &AtomicU64,
    on_event: Option<OnEvent>,
) -> Result<(), String> {
    let mut response = client
        .get(format!("{address}/api/activity/stream"))
        .header("x-organization-id", org)
        .header("x-user-id", user)
        .header("x-user-role", "MEMBER")
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if response.status() != reqwest::StatusCode::OK {
        return Err(format!("{}: {}", response.status(), response.text().await.unwrap_or_default()));
    }
    let mut buffer: Vec<u8> = Vec::new();
    let mut open = false;
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        let received = Instant::now();
        buffer.extend_from_slice(&chunk);
        while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
            let block: Vec<u8> = buffer.drain(..end + 2).collect();
            let block = String::from_utf8_lossy(&block);
            if !open {
                open = true;
                let _ = opened.send(Ok(()));
                continue;
            }
            if let Some(data) = block.lines().find_map(|line| line.strip_prefix("data: ")) {
                counter.fetch_add(1, Ordering::Relaxed);
                if let Some(on_event) = &on_event {
                    on_event(number, org, data, received);
                }
            }
        }
    }
    Err("the server ended the stream".into())
}
