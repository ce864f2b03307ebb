//! Load → decide → append, with retry on conflict.
//!
//! Concurrency. Commands on one stream are serialised inside a process (striped async locks),
//! so only writers in other processes can race; a race shows up as a wrong-expected-version
//! from the store, and the bus reloads and decides again, a bounded number of times with
//! jittered backoff.
//!
//! Loading. Aggregate states are cached per stream with the version they reflect
//! (`state_cache.rs`: bounded in bytes and entries, least recently used out first). A command
//! first decides on the cached state without reading the stream at all (one round trip fewer
//! per command); a load reads only the events after the cached version. The cache is an
//! optimisation only: the append's expected version is what guarantees correctness, so a stale
//! or evicted entry costs one more read, and a refusal or no-op decided on an unread entry is
//! decided again on the stream as stored before the caller hears of it. Cached states are
//! shared (`Arc`): deciding reads them in place, and only a command that appends copies one.
//!
//! Outages. A store that is briefly unavailable (a KurrentDB leader election, a lost
//! connection) is waited out for a few seconds. An append that failed that way may have gone
//! through, so the next attempt decides again on the stream as stored and sends the same event
//! ids; the store answers with a duplicate when they are there, never with a second copy.

use std::sync::Arc;
use std::time::Duration;

use purser_domain::{Aggregate, CommandName, DomainError, Event};
use purser_event_store::{
    EventStore, ExpectedVersion, NewEvent, Position, StoreError, StreamName, read_stream_to_end,
};
use rand::Rng;

use crate::context::CommandContext;
use crate::state_cache::{CacheLimits, CacheStats, StateCache};

/// The stream that holds aggregate `A`'s instance `id`.
pub fn stream_of<A: Aggregate>(id: &A::Id) -> StreamName {
    // Every aggregate names its streams `<category>-<id>` with a lower-case category and an id
    // that is a UUID or a SKU (at most 64 of `A-Z 0-9 - _ .`), so the name is always one the
    // event store accepts; a test below builds one per aggregate to keep it so.
    StreamName::new(A::stream(id)).expect("aggregate ids make valid stream names")
}

/// Why a command did not go through.
#[derive(Debug, thiserror::Error)]
pub enum CommandError<E: DomainError> {
    /// The rules said no. Reported to the caller as a user error.
    #[error(transparent)]
    Domain(E),
    /// Other writers kept winning the race for this stream.
    #[error("the {stream} stream kept changing underneath; try again")]
    Conflict { stream: String },
    /// The event store failed or holds something this build cannot read.
    #[error(transparent)]
    Store(StoreError),
}

/// The outcome of a command that went through.
#[derive(Debug, Clone)]
pub struct Executed<A: Aggregate> {
    /// The state after the command.
    pub state: A::State,
    /// The events appended (empty when the command was already done).
    pub events: Vec<A::Event>,
    /// The stream's version after the command; None if the stream does not exist.
    pub version: Option<u64>,
    /// The global position of the last event appended — or, when nothing was appended, of
    /// the stream's last event — for read-your-writes.
    pub position: Option<Position>,
}

/// Runs commands against the event store.
#[derive(Clone)]
pub struct CommandBus {
    store: Arc<dyn EventStore>,
    cache: Arc<StateCache>,
    locks: Arc<Vec<tokio::sync::Mutex<()>>>,
    max_attempts: usize,
}

/// Pauses before trying again while the store is unavailable: about 3.5 s in all, long
/// enough for a KurrentDB leader election or a Postgres connection to come back; longer
/// outages are reported to the caller.
const OUTAGE_PAUSES: [Duration; 4] = [
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_millis(1750),
];

async fn pause_for_outage(outages: &mut usize, why: &str) {
    tracing::warn!(reason = why, "event store unavailable; trying again");
    tokio::time::sleep(OUTAGE_PAUSES[*outages]).await;
    *outages += 1;
}
const LOCK_STRIPES: usize = 1024;

impl CommandBus {
    /// A bus with the default state cache.
    pub fn new(store: Arc<dyn EventStore>) -> CommandBus {
        CommandBus::with_cache(store, CacheLimits::default())
    }

    /// A bus whose state cache holds at most `limits`.
    pub fn with_cache(store: Arc<dyn EventStore>, limits: CacheLimits) -> CommandBus {
        CommandBus {
            store,
            cache: Arc::new(StateCache::new(limits)),
            locks: Arc::new(
                (0..LOCK_STRIPES)
                    .map(|_| tokio::sync::Mutex::new(()))
                    .collect(),
            ),
            max_attempts: 12,
        }
    }

    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    /// The state cache's size, bounds, hits, misses and evictions.
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    fn stripe(&self, stream: &StreamName) -> &tokio::sync::Mutex<()> {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in stream.as_str().bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        &self.locks[(h % LOCK_STRIPES as u64) as usize]
    }

    /// Loads the current state of aggregate `A`'s instance `id`, its stream's version and last
    /// position.
    pub async fn load<A>(
        &self,
        id: &A::Id,
    ) -> Result<(A::State, Option<u64>, Option<Position>), StoreError>
    where
        A: Aggregate,
        A::State: Send + Sync + 'static,
    {
        let (state, version, position) = self.load_stream::<A>(&stream_of::<A>(id)).await?;
        Ok((Arc::unwrap_or_clone(state), version, position))
    }

    /// The stream's state: the cached one brought up to date with the events after it, or
    /// the whole stream folded when nothing is cached.
    async fn load_stream<A>(
        &self,
        stream: &StreamName,
    ) -> Result<(Arc<A::State>, Option<u64>, Option<Position>), StoreError>
    where
        A: Aggregate,
        A::State: Send + Sync + 'static,
    {
        let (cached, mut version, mut position, from) = match self.cached::<A>(stream, true) {
            Some((s, v, p)) => (Some(s), Some(v), Some(p), v + 1),
            None => (None, None, None, 0),
        };
        let events = read_stream_to_end(&*self.store, stream, from).await?;
        if events.is_empty() {
            return Ok((cached.unwrap_or_default(), version, position));
        }
        // Moving on from the cached state: take it out first, so that (unless a concurrent
        // `load` holds it) it is moved rather than copied.
        let mut state = match cached {
            Some(shared) => {
                self.forget(stream);
                Arc::unwrap_or_clone(shared)
            }
            None => A::State::default(),
        };
        for recorded in &events {
            let event = A::Event::decode(
                &recorded.event_type,
                recorded.schema_version,
                recorded.data.clone(),
            )
            .map_err(|e| {
                StoreError::Backend(format!("cannot decode {} in {stream}: {e}", recorded.id))
            })?;
            state = A::evolve(state, &event);
            version = Some(recorded.version);
            position = Some(recorded.position);
        }
        let state = Arc::new(state);
        if let (Some(v), Some(p)) = (version, position) {
            self.remember(stream, v, p, state.clone());
        }
        Ok((state, version, position))
    }

    /// The cached state of a stream, its version and last position, without asking the store.
    /// A miss is counted if `count_miss` (a caller that loads after a miss counts it there).
    fn cached<A>(
        &self,
        stream: &StreamName,
        count_miss: bool,
    ) -> Option<(Arc<A::State>, u64, Position)>
    where
        A: Aggregate,
        A::State: Send + Sync + 'static,
    {
        let entry = self.cache.get(stream.as_str(), count_miss)?;
        let state = entry.state.downcast::<A::State>().ok()?;
        Some((state, entry.version, entry.position))
    }

    fn remember<S: serde::Serialize + Send + Sync + 'static>(
        &self,
        stream: &StreamName,
        version: u64,
        position: Position,
        state: Arc<S>,
    ) {
        self.cache.put(stream.as_str(), version, position, state);
    }

    fn forget(&self, stream: &StreamName) {
        self.cache.remove(stream.as_str());
    }

    /// Runs `command` against aggregate `A`'s instance `id`.
    pub async fn execute<A>(
        &self,
        id: &A::Id,
        ctx: &CommandContext,
        command: A::Command,
    ) -> Result<Executed<A>, CommandError<A::Error>>
    where
        A: Aggregate,
        A::State: Send + Sync + 'static,
        A::Command: Clone,
    {
        self.execute_all::<A>(id, ctx, vec![command]).await
    }

    /// Runs several commands against one aggregate as one unit: each is decided on the state
    /// the previous ones produced, and all their events are appended together or not at all.
    /// The first refusal refuses the whole unit.
    pub async fn execute_all<A>(
        &self,
        id: &A::Id,
        ctx: &CommandContext,
        commands: Vec<A::Command>,
    ) -> Result<Executed<A>, CommandError<A::Error>>
    where
        A: Aggregate,
        A::State: Send + Sync + 'static,
        A::Command: Clone,
    {
        let stream = &stream_of::<A>(id);
        let aggregate = A::CATEGORY;
        // A unit of several commands is labelled by its first (units are one kind of step,
        // such as a cart's lines added together).
        let command = commands.first().map_or("none", |c| c.command_name());
        let started = std::time::Instant::now();
        // One span per command: its correlation and causation ids tie it to the request or
        // event that caused it, and every log line inside carries them.
        let span = tracing::info_span!(
            "command",
            aggregate,
            command,
            stream = %stream,
            correlation_id = %ctx.correlation_id,
            causation_id = ctx.causation_id.map(tracing::field::display),
            actor = %ctx.actor,
        );
        let outcome = tracing::Instrument::instrument(
            self.execute_all_inner::<A>(stream, ctx, commands, command),
            span,
        )
        .await;
        let result = match &outcome {
            Ok(e) if e.events.is_empty() => "noop",
            Ok(_) => "ok",
            Err(CommandError::Domain(_)) => "rejected",
            Err(CommandError::Conflict { .. }) => "conflict",
            Err(CommandError::Store(_)) => "error",
        };
        metrics::histogram!("purser_command_duration_seconds", "aggregate" => aggregate, "command" => command)
            .record(started.elapsed().as_secs_f64());
        metrics::counter!("purser_commands_total", "aggregate" => aggregate, "command" => command, "outcome" => result)
            .increment(1);
        if let Ok(done) = &outcome {
            for e in &done.events {
                metrics::counter!("purser_events_appended_total", "type" => e.event_type())
                    .increment(1);
            }
        }
        outcome
    }

    async fn execute_all_inner<A>(
        &self,
        stream: &StreamName,
        ctx: &CommandContext,
        commands: Vec<A::Command>,
        command: &'static str,
    ) -> Result<Executed<A>, CommandError<A::Error>>
    where
        A: Aggregate,
        A::State: Send + Sync + 'static,
        A::Command: Clone,
    {
        let _serialised = self.stripe(stream).lock().await;
        let mut backoff = Duration::from_millis(2);
        // The first attempt decides on the cached state without reading the stream: commands on
        // a stream are serialised in this process, so the entry is current unless another
        // process wrote, and then the append's expected version refuses it. Only an append
        // proves the state current, so a refusal or a no-op decided on an unread cache entry is
        // decided again on the stream as stored before it is reported.
        let mut trust_cache = true;
        let mut retry = false;
        // Event ids stay the same across attempts, so that an append that went through
        // unseen (the store became unavailable before it answered) is recognised as a
        // duplicate when it is sent again instead of being stored twice.
        let mut ids: Vec<uuid::Uuid> = Vec::new();
        let mut outages = 0;
        for _ in 0..self.max_attempts {
            if retry {
                metrics::counter!("purser_command_retries_total", "aggregate" => A::CATEGORY, "command" => command)
                    .increment(1);
            }
            retry = true;
            let unread = if trust_cache {
                self.cached::<A>(stream, false)
            } else {
                None
            };
            trust_cache = false;
            let from_cache = unread.is_some();
            let (state, version, position) = match unread {
                Some((state, version, position)) => (state, Some(version), Some(position)),
                None => match self.load_stream::<A>(stream).await {
                    Ok(loaded) => loaded,
                    Err(StoreError::Unavailable(why)) if outages < OUTAGE_PAUSES.len() => {
                        pause_for_outage(&mut outages, &why).await;
                        continue;
                    }
                    Err(e) => return Err(CommandError::Store(e)),
                },
            };
            let mut events = Vec::new();
            // The state the next command is decided on; None while it is still `state`, so
            // that commands which append nothing copy nothing.
            let mut next: Option<A::State> = None;
            let mut refused = None;
            for command in &commands {
                match A::decide(next.as_ref().unwrap_or(&state), command.clone()) {
                    Ok(decided) if decided.is_empty() => {}
                    Ok(decided) => {
                        let base = next.take().unwrap_or_else(|| (*state).clone());
                        next = Some(decided.iter().fold(base, A::evolve));
                        events.extend(decided);
                    }
                    Err(e) => {
                        refused = Some(e);
                        break;
                    }
                }
            }
            if from_cache && (refused.is_some() || events.is_empty()) {
                retry = false;
                continue;
            }
            if let Some(e) = refused {
                return Err(CommandError::Domain(e));
            }
            let Some(next) = next else {
                return Ok(Executed {
                    state: Arc::unwrap_or_clone(state),
                    events,
                    version,
                    position,
                });
            };
            let expected = match version {
                None => ExpectedVersion::NoStream,
                Some(v) => ExpectedVersion::Exact(v),
            };
            let metadata = ctx.metadata();
            let new_events: Vec<NewEvent> = events
                .iter()
                .enumerate()
                .map(|(n, e)| {
                    while ids.len() <= n {
                        ids.push(ctx.event_id(ids.len()));
                    }
                    let (event_type, schema_version, data) = e.encode();
                    NewEvent {
                        id: ids[n],
                        event_type: event_type.to_owned(),
                        schema_version,
                        data,
                        metadata: metadata.clone(),
                    }
                })
                .collect();
            let appending = std::time::Instant::now();
            let appended = self.store.append(stream, expected, new_events).await;
            metrics::histogram!("purser_append_duration_seconds", "aggregate" => A::CATEGORY)
                .record(appending.elapsed().as_secs_f64());
            match appended {
                Ok(outcome) => {
                    if outcome.duplicate {
                        // The same command went through before; report the stream as it is.
                        self.forget(stream);
                        let (state, version, position) = self
                            .load_stream::<A>(stream)
                            .await
                            .map_err(CommandError::Store)?;
                        return Ok(Executed {
                            state: Arc::unwrap_or_clone(state),
                            events: vec![],
                            version,
                            position,
                        });
                    }
                    let state = Arc::new(next);
                    self.remember(
                        stream,
                        outcome.last_version,
                        outcome.last_position,
                        state.clone(),
                    );
                    return Ok(Executed {
                        state: Arc::unwrap_or_clone(state),
                        events,
                        version: Some(outcome.last_version),
                        position: Some(outcome.last_position),
                    });
                }
                Err(
                    StoreError::WrongExpectedVersion { .. }
                    | StoreError::IdempotencyMismatch { .. },
                ) if from_cache => {
                    // Another process wrote since this process last did (an idempotent retry of
                    // a command it appended, decided on the old state, can also differ from the
                    // original): read the events after the cached version and decide again at
                    // once, not a race between writers, so no pause. The entry stays: it is
                    // still a true prefix of the stream.
                    retry = false;
                }
                Err(StoreError::WrongExpectedVersion { .. }) => {
                    metrics::counter!("purser_command_conflicts_total", "aggregate" => A::CATEGORY, "command" => command)
                        .increment(1);
                    // Someone else wrote first: forget what we thought we knew and decide
                    // again on the new state, after a short random pause so that racing
                    // writers spread out.
                    self.forget(stream);
                    let jitter = rand::rng().random_range(0..=backoff.as_micros() as u64);
                    tokio::time::sleep(Duration::from_micros(jitter)).await;
                    backoff = (backoff * 2).min(Duration::from_millis(200));
                }
                Err(StoreError::Unavailable(why)) if outages < OUTAGE_PAUSES.len() => {
                    // A leader election, a restart, a lost connection: the append may or may
                    // not have happened. Decide again on the stream as stored and send the
                    // same ids; the store recognises them if they are there.
                    self.forget(stream);
                    pause_for_outage(&mut outages, &why).await;
                }
                Err(e) => return Err(CommandError::Store(e)),
            }
        }
        Err(CommandError::Conflict {
            stream: stream.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use purser_domain::cart::Cart;
    use purser_domain::customer::Customer;
    use purser_domain::inventory::Inventory;
    use purser_domain::license::{License, LicensePool};
    use purser_domain::notification::Notification;
    use purser_domain::order::Order;
    use purser_domain::payment::Payment;
    use purser_domain::product::Product;
    use purser_domain::{CartId, CustomerId, LicenseId, NotificationId, OrderId, PaymentId, Sku};

    use super::stream_of;

    #[test]
    fn every_aggregate_id_names_a_valid_stream() {
        let longest = Sku::parse(&"Z".repeat(Sku::MAX_LEN)).unwrap();
        let odd = Sku::parse("a.b_c-9").unwrap();
        for sku in [&longest, &odd] {
            assert_eq!(stream_of::<Product>(sku).as_str(), sku.product_stream());
            assert_eq!(stream_of::<Inventory>(sku).as_str(), sku.inventory_stream());
            assert_eq!(
                stream_of::<LicensePool>(sku).as_str(),
                sku.license_pool_stream()
            );
        }
        let order = OrderId::new();
        assert_eq!(stream_of::<Order>(&order).as_str(), order.stream());
        assert_eq!(stream_of::<Order>(&order).category(), "order");
        stream_of::<Cart>(&CartId::new());
        stream_of::<Payment>(&PaymentId::new());
        stream_of::<Customer>(&CustomerId::new());
        stream_of::<License>(&LicenseId::new());
        stream_of::<Notification>(&NotificationId::new());
    }
}
