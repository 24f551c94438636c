//! Live activity: every open stream of this instance, fed from one reader per organization.
//!
//! Each organization with open streams has a [`Feed`]: a task that registers the
//! organization with PostgreSQL (`api.watch_activity`, so its changes wake us), waits for a
//! wake-up (a notification through the LISTEN connection of `listen.rs`, or the poll
//! interval when there is none), reads what is new once (`api.activity_stream`, through
//! the scoped transaction, as one of the organization's own callers: row-level security
//! decides) and hands each entry to that organization's streams, filters applied in
//! memory. Reads are per (instance, organization) and wake-up, never per stream.
//!
//! A stream starts at a position (an entry id): it reads what it missed itself, with its
//! own identity and filters in SQL, until it has reached its feed's position; from then
//! on, under the feed's lock, it takes its entries from the feed. Ids are per organization
//! and commit-ordered (every snapshot of the log is a prefix 1..k), so "every entry after
//! my position" is exact: no gap, no duplicate.
//!
//! Memory is bounded: a stream holds at most STREAM_MAX_QUEUED entries waiting for its
//! client (shared, not copied); one further behind is fed no more, and its stream ends
//! once the client has read what was queued (it resumes with `Last-Event-ID`); a client
//! that stops reading altogether is cut off by its connection (`http::connections`: no
//! byte taken for IDLE_TIMEOUT_MS). A stream that ends (client gone, token expired,
//! shutdown) frees its place at once; the last one of an organization ends its feed.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, MutexGuard, OnceLock, Weak,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed},
    },
    time::Duration,
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tokio::{
    sync::{Notify, mpsc, watch},
    time::Instant,
};

use super::{
    Database, Endpoint, Error,
    stream::{self, Filters, Position},
};
use crate::domain::{ActivityEntry, TenantContext};

/// Entries one read returns at most (a stream's catch-up, or a feed's).
pub const PAGE: i32 = 200;
/// How long a registration holds (`api.watch_activity`), and how often a feed renews it:
/// every 15-25 s, each feed at its own point in that span, so that the feeds opened
/// together (at start, or after a restart) do not all queue on the pool at once.
const WATCH_SECONDS: i32 = 60;
pub const RENEW_EVERY: Duration = Duration::from_secs(15);
const RENEW_SPREAD_MS: u64 = 10_000;
/// The most entries a stream takes from its queue for one write.
const BATCH: usize = 256;

/// The limits and timings of live streams (STREAM_* settings).
#[derive(Debug, Clone, Copy)]
pub struct LiveSettings {
    /// Streams this instance serves at once (0: no limit).
    pub max_streams: usize,
    /// Streams one organization may have open on this instance (0: no limit).
    pub max_per_org: usize,
    /// Entries a stream may have waiting for its client; past it the stream ends.
    pub max_queued: usize,
    /// Bytes (of entries as JSON) a stream may have waiting; past it the stream ends too.
    pub max_queued_bytes: usize,
    /// How often a feed reads when nothing can wake it (no LISTEN connection, or its
    /// registration failed).
    pub poll_interval: Duration,
    /// A write after this long without one keeps proxies from closing the connection.
    pub heartbeat: Duration,
    /// The `retry:` a stream sends: how long a client waits before reconnecting.
    pub retry: Duration,
}

/// One activity entry on its way to the streams of its organization, shared by them all.
pub struct LiveEntry {
    pub entry: ActivityEntry,
    /// The entry as a client receives it, made once by the first stream that sends it.
    pub wire: OnceLock<Bytes>,
    /// Its size as JSON, what it counts against a stream's STREAM_MAX_QUEUED_BYTES.
    size: usize,
}

impl LiveEntry {
    fn new(entry: ActivityEntry) -> Arc<LiveEntry> {
        /// Counts what is written, keeping nothing.
        struct Counter(usize);
        impl std::io::Write for Counter {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0 += bytes.len();
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut counter = Counter(0);
        let _ = serde_json::to_writer(&mut counter, &entry);
        Arc::new(LiveEntry { entry, wire: OnceLock::new(), size: counter.0 })
    }
}

/// Why a stream could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The organization has STREAM_MAX_PER_ORG streams open on this instance.
    Organization,
    /// This instance serves STREAM_MAX streams, or is shutting down.
    Instance,
}

/// What a stream does next (see [`Subscription::next`]).
pub enum Next {
    /// Entries to send, oldest first.
    Entries(Vec<Arc<LiveEntry>>),
    /// Nothing came before the deadline.
    Idle,
    /// The client fell more than STREAM_MAX_QUEUED entries behind: the stream ends.
    Behind,
    /// The server is shutting down: the stream ends.
    Closed,
    /// A read failed: the stream ends (the client resumes where it was).
    Failed(Error),
}

/// Counters for `/metrics`.
#[derive(Default)]
struct Counters {
    wakeups: AtomicU64,
    polls: AtomicU64,
    feed_reads: AtomicU64,
    catch_up_reads: AtomicU64,
    entries: AtomicU64,
    fell_behind: AtomicU64,
    ended: [AtomicU64; 5],
    refused: [AtomicU64; 2],
}

/// Why a stream ended, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The client went away (or the stream's response was dropped).
    Client = 0,
    Behind = 1,
    /// Its bearer token expired.
    Expired = 2,
    Shutdown = 3,
    Failed = 4,
}

impl Ending {
    pub const ALL: [Ending; 5] =
        [Ending::Client, Ending::Behind, Ending::Expired, Ending::Shutdown, Ending::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Ending::Client => "client",
            Ending::Behind => "behind",
            Ending::Expired => "expired",
            Ending::Shutdown => "shutdown",
            Ending::Failed => "failed",
        }
    }
}

/// A snapshot of the counters, for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct LiveStats {
    pub streams: usize,
    pub organizations: usize,
    pub listening: bool,
    pub wakeups: u64,
    pub polls: u64,
    pub feed_reads: u64,
    pub catch_up_reads: u64,
    pub entries: u64,
    /// Entries waiting in the streams' queues for their clients now.
    pub queued: usize,
    /// Their bytes (as JSON), each stream's at most STREAM_MAX_QUEUED_BYTES.
    pub queued_bytes: usize,
    /// Streams whose client fell more than STREAM_MAX_QUEUED entries behind.
    pub fell_behind: u64,
    /// Streams ended, by [`Ending`] (in [`Ending::ALL`]'s order).
    pub ended: [u64; 5],
    /// Streams refused: over the organization's limit, over the instance's.
    pub refused: [u64; 2],
}

/// The streams of this instance and the feeds behind them.
pub struct LiveActivity {
    db: Database,
    settings: LiveSettings,
    /// Keys the routing value of each organization's wake-ups.
    routes: Hmac<Sha256>,
    /// Where the LISTEN connection goes; taken when the first stream opens.
    listen: Mutex<Option<Endpoint>>,
    feeds: Mutex<Feeds>,
    listening: AtomicBool,
    closed: watch::Sender<bool>,
    counters: Counters,
}

#[derive(Default)]
struct Feeds {
    by_org: HashMap<String, Arc<Feed>>,
    by_route: HashMap<String, Arc<Feed>>,
    open: usize,
    next_key: u64,
}

/// One organization's reader and its streams.
struct Feed {
    org: String,
    route: String,
    /// Who the feed reads as: the first stream's caller (every role sees every entry of
    /// its organization).
    reader: TenantContext,
    /// A wake-up: something may have been written.
    wake: Notify,
    /// The feed became ready or moved on (streams still catching up wait for it).
    progress: Notify,
    state: Mutex<FeedState>,
}

struct FeedState {
    /// Registered and positioned: `cursor` is meaningful.
    ready: bool,
    /// A registration was tried (it may have failed: the feed then polls).
    tried: bool,
    /// Everything up to here was read and handed out.
    cursor: Position,
    subscribers: HashMap<u64, Subscriber>,
    /// The last stream left: the task ends.
    closed: bool,
}

struct Subscriber {
    filters: Filters,
    /// Takes its entries from the feed (else it is still reading what it missed).
    live: bool,
    /// The last entry it was handed (or read itself).
    position: i64,
    /// `None` once it fell behind.
    queue: Option<mpsc::Sender<Arc<LiveEntry>>>,
    /// The bytes of what waits in the queue (the stream takes them off as it receives).
    queued_bytes: Arc<AtomicUsize>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl LiveActivity {
    /// `key` keys the routing values (the service's own key: every instance on one
    /// database derives the same values); `listen` is where the LISTEN connection goes.
    pub fn new(db: Database, settings: LiveSettings, key: &[u8; 32], listen: Endpoint) -> Arc<LiveActivity> {
        let mut derive =
            <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes a key of any length");
        derive.update(b"tenantry: activity stream routes");
        let route_key = derive.finalize().into_bytes();
        Arc::new(LiveActivity {
            db,
            settings,
            routes: <Hmac<Sha256> as KeyInit>::new_from_slice(&route_key).expect("a 32-byte key"),
            listen: Mutex::new(Some(listen)),
            feeds: Mutex::default(),
            listening: AtomicBool::new(false),
            closed: watch::Sender::new(false),
            counters: Counters::default(),
        })
    }

    pub fn settings(&self) -> &LiveSettings {
        &self.settings
    }

    /// The routing value of `org`'s wake-ups: 16 bytes of HMAC-SHA256, base64url.
    pub fn route(&self, org: &str) -> String {
        let mut mac = self.routes.clone();
        mac.update(org.as_bytes());
        URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..16])
    }

    /// Opens a stream of `ctx`'s organization whose client has everything up to `from`.
    pub fn subscribe(
        self: &Arc<Self>,
        ctx: &TenantContext,
        filters: Filters,
        from: Position,
    ) -> Result<Subscription, Refused> {
        let (queue, receiver) = mpsc::channel(self.settings.max_queued.max(1));
        let mut feeds = lock(&self.feeds);
        let refuse = |refused: Refused| {
            self.counters.refused[refused as usize].fetch_add(1, Relaxed);
            Err(refused)
        };
        if *self.closed.borrow() || (self.settings.max_streams > 0 && feeds.open >= self.settings.max_streams)
        {
            return refuse(Refused::Instance);
        }
        let existing = feeds.by_org.get(&ctx.org_id).cloned();
        let open_here = existing.as_ref().map_or(0, |feed| lock(&feed.state).subscribers.len());
        if self.settings.max_per_org > 0 && open_here >= self.settings.max_per_org {
            return refuse(Refused::Organization);
        }
        let created = existing.is_none();
        let feed = existing.unwrap_or_else(|| {
            let feed = Arc::new(Feed {
                org: ctx.org_id.clone(),
                route: self.route(&ctx.org_id),
                reader: ctx.clone(),
                wake: Notify::new(),
                progress: Notify::new(),
                state: Mutex::new(FeedState {
                    ready: false,
                    tried: false,
                    cursor: Position { id: 0, at: None },
                    subscribers: HashMap::new(),
                    closed: false,
                }),
            });
            feeds.by_org.insert(feed.org.clone(), feed.clone());
            feeds.by_route.insert(feed.route.clone(), feed.clone());
            feed
        });
        let key = feeds.next_key;
        feeds.next_key += 1;
        feeds.open += 1;
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        lock(&feed.state).subscribers.insert(
            key,
            Subscriber {
                filters: filters.clone(),
                live: false,
                position: from.id,
                queue: Some(queue),
                queued_bytes: queued_bytes.clone(),
            },
        );
        drop(feeds);
        if created {
            tokio::spawn(self.clone().run_feed(feed.clone()));
            self.start_listening();
        }
        Ok(Subscription {
            hub: self.clone(),
            feed,
            key,
            ctx: ctx.clone(),
            filters,
            position: from,
            live: false,
            receiver,
            queued_bytes,
            closed: self.closed.subscribe(),
            ending: Ending::Client,
        })
    }

    /// Ends every stream now and refuses new ones (SIGTERM).
    pub fn close(&self) {
        self.closed.send_replace(true);
        self.wake_all();
    }

    pub fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    /// A notification: wake the feed it routes to, if it is ours.
    pub(super) fn wake_route(&self, route: &str) {
        let feed = lock(&self.feeds).by_route.get(route).cloned();
        if let Some(feed) = feed {
            self.counters.wakeups.fetch_add(1, Relaxed);
            feed.wake.notify_one();
        }
    }

    /// Wakes every feed: the LISTEN connection (re)started, and notifications may have
    /// been missed meanwhile; or the service is shutting down.
    pub(super) fn wake_all(&self) {
        let feeds: Vec<Arc<Feed>> = lock(&self.feeds).by_org.values().cloned().collect();
        for feed in feeds {
            feed.wake.notify_one();
        }
    }

    pub(super) fn set_listening(&self, listening: bool) {
        if self.listening.swap(listening, Relaxed) && !listening {
            // Feeds waiting for notifications until their next renewal (15-25 s) poll
            // from now on: wake them to say so (and to read once, for what was notified
            // as the connection went).
            self.wake_all();
        }
    }

    pub fn stats(&self) -> LiveStats {
        let feeds = lock(&self.feeds);
        let load = |counter: &AtomicU64| counter.load(Relaxed);
        let (queued, queued_bytes) = feeds
            .by_org
            .values()
            .flat_map(|feed| {
                let state = lock(&feed.state);
                state
                    .subscribers
                    .values()
                    .map(|s| {
                        let entries = s.queue.as_ref().map_or(0, |q| q.max_capacity() - q.capacity());
                        (entries, s.queued_bytes.load(Relaxed))
                    })
                    .collect::<Vec<_>>()
            })
            .fold((0, 0), |(entries, bytes), (e, b)| (entries + e, bytes + b));
        LiveStats {
            streams: feeds.open,
            organizations: feeds.by_org.len(),
            listening: self.listening.load(Relaxed),
            wakeups: load(&self.counters.wakeups),
            polls: load(&self.counters.polls),
            feed_reads: load(&self.counters.feed_reads),
            catch_up_reads: load(&self.counters.catch_up_reads),
            entries: load(&self.counters.entries),
            queued,
            queued_bytes,
            fell_behind: load(&self.counters.fell_behind),
            ended: std::array::from_fn(|i| load(&self.counters.ended[i])),
            refused: std::array::from_fn(|i| load(&self.counters.refused[i])),
        }
    }

    /// Starts the LISTEN connection, once (with the first stream).
    fn start_listening(self: &Arc<Self>) {
        if let Some(endpoint) = lock(&self.listen).take() {
            tokio::spawn(super::listen::run(endpoint, Arc::downgrade(self)));
        }
    }

    pub(super) fn closed_signal(&self) -> watch::Receiver<bool> {
        self.closed.subscribe()
    }

    /// One organization's reader: registers, then reads once per wake-up (or poll) and
    /// hands out what it read, until its last stream leaves or the service shuts down.
    async fn run_feed(self: Arc<Self>, feed: Arc<Feed>) {
        let mut closed = self.closed.subscribe();
        let mut renew_at = Instant::now();
        let renew_every = RENEW_EVERY + Duration::from_millis(spread(&feed.route) % RENEW_SPREAD_MS);
        let mut registered = false;
        let mut healthy = true;
        let mut read_now = false;
        loop {
            if lock(&feed.state).closed || *closed.borrow() {
                break;
            }
            if Instant::now() >= renew_at {
                match stream::watch(&self.db, &feed.reader, &feed.route, WATCH_SECONDS).await {
                    Ok(last) => {
                        registered = true;
                        renew_at = Instant::now() + renew_every;
                        let mut state = lock(&feed.state);
                        state.tried = true;
                        if !state.ready {
                            state.ready = true;
                            state.cursor = last;
                        } else if state.cursor.id < last.id {
                            // Entries the feed has not read were committed before this
                            // registration, when it may not have been in force (it had
                            // lapsed, or the feed was polling): they may never notify, so
                            // they are read now, not at the organization's next change.
                            read_now = true;
                        }
                        drop(state);
                        feed.progress.notify_waiters();
                    }
                    Err(err) => {
                        let ready = lock(&feed.state).ready;
                        if registered || !ready {
                            tracing::warn!(error = %err, "could not register an organization's streams; polling");
                        }
                        // Unregistered, the feed polls; it still needs a position to poll from.
                        let position = match ready {
                            true => None,
                            false => stream::read(&self.db, &feed.reader, None, &Filters::default(), 1, None)
                                .await
                                .ok()
                                .map(|page| page.through),
                        };
                        let mut state = lock(&feed.state);
                        if let Some(position) = position.filter(|_| !state.ready) {
                            state.ready = true;
                            state.cursor = position;
                        }
                        state.tried = true;
                        drop(state);
                        feed.progress.notify_waiters();
                        registered = false;
                        renew_at = Instant::now() + self.settings.poll_interval.max(Duration::from_secs(1));
                    }
                }
            }
            if read_now && lock(&feed.state).ready {
                loop {
                    match self.read_feed(&feed).await {
                        Ok(true) => continue,
                        Ok(false) => healthy = true,
                        Err(err) => {
                            tracing::warn!(error = %err, "reading an organization's new activity failed; polling");
                            healthy = false;
                        }
                    }
                    break;
                }
            }
            let polling = !registered || !healthy || !self.listening.load(Relaxed);
            let until =
                if polling { renew_at.min(Instant::now() + self.settings.poll_interval) } else { renew_at };
            tokio::select! {
                _ = feed.wake.notified() => read_now = true,
                _ = tokio::time::sleep_until(until) => {
                    read_now = polling;
                    if polling {
                        self.counters.polls.fetch_add(1, Relaxed);
                    }
                }
                _ = closed.changed() => {}
            }
        }
    }

    /// Reads what is new in `feed`'s organization once and hands it out; `true` when the
    /// page was full (more may follow at once).
    async fn read_feed(&self, feed: &Feed) -> Result<bool, Error> {
        let cursor = lock(&feed.state).cursor;
        let page = stream::read(
            &self.db,
            &feed.reader,
            Some(cursor),
            &Filters::default(),
            PAGE,
            self.db.page_max_bytes(),
        )
        .await?;
        self.counters.feed_reads.fetch_add(1, Relaxed);
        let more = page.through.id < page.last;
        let entries: Vec<Arc<LiveEntry>> = page.entries.into_iter().map(LiveEntry::new).collect();
        let mut state = lock(&feed.state);
        if page.through.id > state.cursor.id {
            state.cursor = page.through;
        }
        let through = state.cursor.id;
        let mut handed = 0;
        for subscriber in state.subscribers.values_mut().filter(|s| s.live) {
            let Some(queue) = &subscriber.queue else { continue };
            let mut kept = true;
            for entry in entries.iter().filter(|e| e.entry.id > subscriber.position) {
                if !subscriber.filters.matches(&entry.entry) {
                    continue;
                }
                // Past its byte budget (one entry always fits), full (the client is more
                // than STREAM_MAX_QUEUED behind) or gone: what it has queued still goes
                // out, then its stream ends.
                let waiting = subscriber.queued_bytes.load(Relaxed);
                if (waiting > 0 && waiting + entry.size > self.settings.max_queued_bytes)
                    || queue.try_send(entry.clone()).is_err()
                {
                    kept = false;
                    break;
                }
                subscriber.queued_bytes.fetch_add(entry.size, Relaxed);
                handed += 1;
            }
            if kept {
                subscriber.position = subscriber.position.max(through);
            } else {
                subscriber.queue = None;
                self.counters.fell_behind.fetch_add(1, Relaxed);
            }
        }
        drop(state);
        self.counters.entries.fetch_add(handed, Relaxed);
        feed.progress.notify_waiters();
        Ok(more)
    }
}

/// A number that differs between organizations (their routes are keyed hashes).
fn spread(route: &str) -> u64 {
    route.bytes().fold(0u64, |sum, byte| sum.wrapping_mul(31).wrapping_add(u64::from(byte)))
}

/// One open stream: its place in its organization's feed. Dropping it frees the place.
pub struct Subscription {
    hub: Arc<LiveActivity>,
    feed: Arc<Feed>,
    key: u64,
    ctx: TenantContext,
    filters: Filters,
    /// What the client has (before the stream is live; after, the feed keeps it).
    position: Position,
    live: bool,
    receiver: mpsc::Receiver<Arc<LiveEntry>>,
    /// Shared with the feed: the bytes waiting in `receiver`.
    queued_bytes: Arc<AtomicUsize>,
    closed: watch::Receiver<bool>,
    ending: Ending,
}

/// Where a stream still reading what it missed stands against its feed.
enum Standing {
    NotReady,
    Behind,
    Live,
}

impl Subscription {
    /// The next entries for the client, or why there are none: reads what the stream
    /// missed first (as its own caller, its filters in SQL), then takes entries from its
    /// feed. Returns [`Next::Idle`] when nothing came by `until` (a heartbeat is due, or the
    /// token expires); a read under way is finished first.
    pub async fn next(&mut self, until: Instant) -> Next {
        loop {
            if *self.closed.borrow() {
                return self.end(Next::Closed);
            }
            if !self.live {
                let feed = self.feed.clone();
                let progress = feed.progress.notified();
                tokio::pin!(progress);
                progress.as_mut().enable();
                match self.standing() {
                    Standing::Live => self.live = true,
                    Standing::Behind => match self.catch_up().await {
                        Ok(entries) if !entries.is_empty() => return Next::Entries(entries),
                        Ok(_) => {}
                        Err(err) => return self.end(Next::Failed(err)),
                    },
                    Standing::NotReady => tokio::select! {
                        _ = progress => {}
                        _ = tokio::time::sleep_until(until) => return Next::Idle,
                        _ = self.closed.changed() => {}
                    },
                }
                continue;
            }
            tokio::select! {
                biased;
                _ = self.closed.changed() => {}
                received = self.receiver.recv() => {
                    let Some(first) = received else { return self.end(Next::Behind) };
                    let mut entries = vec![first];
                    while entries.len() < BATCH {
                        match self.receiver.try_recv() {
                            Ok(entry) => entries.push(entry),
                            Err(_) => break,
                        }
                    }
                    let taken = entries.iter().map(|entry| entry.size).sum();
                    self.queued_bytes.fetch_sub(taken, Relaxed);
                    return Next::Entries(entries);
                }
                _ = tokio::time::sleep_until(until) => return Next::Idle,
            }
        }
    }

    /// Waits until the stream's organization is registered with PostgreSQL (at once but
    /// for its first stream): from then on every change notifies, so a client that saw the
    /// opening block can rely on being woken. A failed registration does not hold the
    /// stream back (it is fed by polling until one succeeds).
    pub async fn registered(&self) {
        // Nor does shutdown: a feed that starts once the service is closing never tries.
        let mut closed = self.closed.clone();
        loop {
            let progress = self.feed.progress.notified();
            tokio::pin!(progress);
            progress.as_mut().enable();
            if lock(&self.feed.state).tried || *closed.borrow_and_update() {
                return;
            }
            tokio::select! {
                _ = progress => {}
                _ = closed.changed() => {}
            }
        }
    }

    /// Records why the stream ends (for `/metrics`).
    pub fn ended(&mut self, why: Ending) {
        self.ending = why;
    }

    fn end(&mut self, next: Next) -> Next {
        self.ending = match next {
            Next::Behind => Ending::Behind,
            Next::Closed => Ending::Shutdown,
            Next::Failed(_) => Ending::Failed,
            _ => self.ending,
        };
        next
    }

    fn standing(&mut self) -> Standing {
        let mut state = lock(&self.feed.state);
        if !state.ready {
            return Standing::NotReady;
        }
        if self.position.id < state.cursor.id {
            return Standing::Behind;
        }
        if let Some(subscriber) = state.subscribers.get_mut(&self.key) {
            subscriber.live = true;
            subscriber.position = self.position.id;
        }
        Standing::Live
    }

    /// One page of what the stream missed, read as its own caller with its filters.
    async fn catch_up(&mut self) -> Result<Vec<Arc<LiveEntry>>, Error> {
        let hub = &self.hub;
        let page = stream::read(
            &hub.db,
            &self.ctx,
            Some(self.position),
            &self.filters,
            PAGE,
            hub.db.page_max_bytes(),
        )
        .await?;
        hub.counters.catch_up_reads.fetch_add(1, Relaxed);
        self.position = page.through;
        Ok(page.entries.into_iter().map(LiveEntry::new).collect())
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.counters.ended[self.ending as usize].fetch_add(1, Relaxed);
        let mut feeds = lock(&self.hub.feeds);
        feeds.open -= 1;
        let mut state = lock(&self.feed.state);
        state.subscribers.remove(&self.key);
        if state.subscribers.is_empty() {
            state.closed = true;
            drop(state);
            if feeds.by_org.get(&self.feed.org).is_some_and(|feed| Arc::ptr_eq(feed, &self.feed)) {
                feeds.by_org.remove(&self.feed.org);
                feeds.by_route.remove(&self.feed.route);
            }
            self.feed.wake.notify_one();
        }
    }
}

/// The hub a stream belongs to, weakly (the LISTEN connection holds one).
pub(super) type WeakHub = Weak<LiveActivity>;
