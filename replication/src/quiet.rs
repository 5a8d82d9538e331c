//! Quiet groups: a partition group with nothing to replicate stops its Raft timers.
//!
//! Every running group ticks (openraft's election and heartbeat timers fire about
//! five times per heartbeat interval) and its leader heartbeats each follower, so a
//! broker holding hundreds of idle partitions spends a good part of a core on them.
//! A group whose leader has committed and applied everything, whose followers hold
//! all of it and which has seen no write for a while goes quiet:
//!
//! ```text
//!  leader: idle, every follower matched ─► QUIET(term, last index) to each follower
//!  follower: same leader, term and log, all committed ─► stops ticking, answers yes
//!  leader: every follower said yes and nothing woke it meanwhile ─► stops ticking
//! ```
//!
//! Liveness then comes from the transport's keep-alive (one ping per broker pair,
//! whatever the number of groups):
//! - a write or a leadership transfer wakes the leader; its appends wake the
//!   followers;
//! - any Raft message for a quiet group wakes it once Raft has handled the
//!   message, so a follower's election timer restarts from its leader's message;
//! - a quiet follower whose leader's broker has not been heard for longer than an
//!   election timeout wakes after a random delay and, its timer long expired,
//!   stands for election;
//! - a quiet leader wakes when a connection to a peer comes up (a restarted
//!   follower must hear heartbeats before its own timer expires) or when it has
//!   not heard a majority of its group within its lease;
//! - quiet is itself a lease: the leader renews it every
//!   [`QuietTimes::renew_every`] and a follower whose quiet was not renewed
//!   within [`QuietTimes::expire_after`] wakes as if its leader were silent, so
//!   a group that stopped on a live broker is taken over by the others. A
//!   follower that refuses a renewal wakes its leader.
//!
//! While a leader is quiet (and for one lease after it wakes), its lease counts
//! from the keep-alive of its followers' brokers instead of their heartbeat
//! answers. Raft's safety does not rest on timers: quiet only changes when an
//! election may start, never what a vote or a commit requires.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use openraft::async_runtime::watch::WatchReceiver;
use openraft::ServerState;
use parking_lot::Mutex;
use tracing::debug;

use crate::raft::RaftNode;
use crate::transport::{wire, Transport};

/// When groups go quiet and how long a quiet lasts.
#[derive(Debug, Clone, Copy)]
pub struct QuietTimes {
    /// How long a leader's log must stay unchanged before its group goes quiet.
    pub idle_after: Duration,
    /// How often a quiet leader renews its followers' quiet.
    pub renew_every: Duration,
    /// How long a follower stays quiet without a renewal.
    pub expire_after: Duration,
}

impl Default for QuietTimes {
    fn default() -> Self {
        QuietTimes {
            idle_after: Duration::from_secs(5),
            renew_every: Duration::from_secs(3),
            expire_after: Duration::from_secs(10),
        }
    }
}

/// What the quiet loop does next for a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Nothing,
    /// An idle leader asks its followers to go quiet, or a quiet one renews.
    Ask,
}

/// One group's quiet state on this broker.
#[derive(Debug)]
pub struct Quiet {
    raft: RaftNode,
    transport: Arc<Transport>,
    group: u64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    asleep: bool,
    /// Bumped by every wake: an attempt to go quiet that saw another value
    /// gives up.
    generation: u64,
    /// When the group last woke from quiet.
    woke_at: Option<Instant>,
    /// The transport's connection count when the group went quiet.
    connections: u64,
    /// An attempt to go quiet is under way.
    attempting: bool,
    /// A wake is scheduled (a follower whose leader went silent).
    wake_scheduled: bool,
    /// A quiet follower's quiet ends then unless renewed.
    quiet_until: Option<Instant>,
    /// When a quiet leader's followers last agreed.
    renewed_at: Option<Instant>,
    /// The last log index seen, and since when.
    seen: (Option<u64>, Instant),
}

/// What a quiet follower checks before it stops ticking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietRequest {
    pub term: u64,
    pub last_index: u64,
    /// How long the follower stays quiet unless renewed.
    pub lease_ms: u64,
}

/// Longest quiet lease a follower accepts.
const LEASE_MAX: Duration = Duration::from_secs(600);

impl QuietRequest {
    const BYTES: usize = 24;

    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(Self::BYTES);
        out.put_u64(self.term);
        out.put_u64(self.last_index);
        out.put_u64(self.lease_ms);
        out.freeze()
    }

    pub fn decode(mut payload: Bytes) -> Result<Self, String> {
        if payload.len() != Self::BYTES {
            return Err(format!(
                "quiet request of {} bytes, not {}",
                payload.len(),
                Self::BYTES
            ));
        }
        Ok(QuietRequest {
            term: payload.get_u64(),
            last_index: payload.get_u64(),
            lease_ms: payload.get_u64(),
        })
    }

    fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms).min(LEASE_MAX)
    }
}

/// A small per-group, per-moment spread (no shared random source needed).
fn jitter(group: u64, span: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    let mixed = (group ^ nanos).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
    let span_ms = span.as_millis().max(1) as u64;
    Duration::from_millis(mixed % span_ms)
}

impl Quiet {
    pub fn new(raft: RaftNode, transport: Arc<Transport>, group: u64) -> Arc<Self> {
        Arc::new(Quiet {
            raft,
            transport,
            group,
            state: Mutex::new(State {
                asleep: false,
                generation: 0,
                woke_at: None,
                connections: 0,
                attempting: false,
                wake_scheduled: false,
                quiet_until: None,
                renewed_at: None,
                seen: (None, Instant::now()),
            }),
        })
    }

    fn election_timeout(&self) -> Duration {
        Duration::from_millis(self.raft.config().election_timeout_min)
    }

    pub fn is_asleep(&self) -> bool {
        self.state.lock().asleep
    }

    /// Starts the group's timers again (a write, a transfer, a peer's message).
    pub fn wake(&self) {
        let mut s = self.state.lock();
        s.generation += 1;
        s.wake_scheduled = false;
        if s.asleep {
            s.asleep = false;
            s.woke_at = Some(Instant::now());
            self.raft.runtime_config().tick(true);
            debug!(group = self.group, "group woke");
        }
    }

    /// Stops the timers unless something woke the group since `generation` was
    /// read; `until` is a follower's quiet lease.
    fn sleep_if(&self, generation: u64, until: Option<Instant>) -> bool {
        let mut s = self.state.lock();
        if s.generation != generation || s.asleep {
            return false;
        }
        s.asleep = true;
        s.connections = self.transport.connection_count();
        s.quiet_until = until;
        s.renewed_at = Some(Instant::now());
        self.raft.runtime_config().tick(false);
        true
    }

    /// Whether the group's voters, this broker included, are mostly heard on the
    /// transport within `within`.
    fn majority_heard(&self, voters: &BTreeSet<u64>, within: Duration) -> bool {
        let me = self.raft.node_id();
        let heard = voters
            .iter()
            .filter(|v| **v == *me || self.transport.heard_within(**v, within))
            .count();
        heard * 2 > voters.len()
    }

    /// On a leader whose quorum answers are older than `lease`: whether quiet
    /// keeps its lease (it is quiet or woke within a lease, and a majority of its
    /// group's brokers were heard within the lease).
    pub fn holds_lease(&self, voters: &BTreeSet<u64>, lease: Duration) -> bool {
        self.quiet_within(lease) && self.majority_heard(voters, lease)
    }

    /// Whether the group is quiet or woke within `within`.
    fn quiet_within(&self, within: Duration) -> bool {
        let s = self.state.lock();
        s.asleep || s.woke_at.is_some_and(|at| at.elapsed() <= within)
    }

    /// Whether follower `node` counts as in sync for `lag_max` on a quiet leader
    /// (or one that woke within `lag_max`): its broker was heard within it.
    pub fn follower_heard(&self, node: u64, lag_max: Duration) -> bool {
        self.quiet_within(lag_max) && self.transport.heard_within(node, lag_max)
    }

    /// One pass of the broker's quiet loop: wakes a quiet group whose peers went
    /// silent, came back or stopped renewing, and says whether the leader should
    /// ask its followers (to go quiet, or to stay quiet).
    pub fn watch(self: &Arc<Self>, now: Instant, times: &QuietTimes) -> Next {
        let metrics = self.raft.metrics();
        let m = metrics.borrow_watched();
        let me = m.id;
        let voters: BTreeSet<u64> = m.membership_config.membership().voter_ids().collect();
        let last = m.last_log_index;
        let leading = m.state == ServerState::Leader && m.current_leader == Some(me);
        let leader = m.current_leader;
        drop(m);
        let election = self.election_timeout();
        let mut s = self.state.lock();
        if s.seen.0 != last {
            s.seen = (last, now);
        }
        if s.attempting {
            return Next::Nothing;
        }
        if !s.asleep {
            let idle = leading && now.duration_since(s.seen.1) >= times.idle_after;
            return if idle { Next::Ask } else { Next::Nothing };
        }
        if leading {
            let reconnected = self.transport.connection_count() != s.connections;
            let renew = s
                .renewed_at
                .is_none_or(|at| now.duration_since(at) >= times.renew_every);
            drop(s);
            if reconnected || !self.majority_heard(&voters, election) {
                self.wake();
                return Next::Nothing;
            }
            return if renew { Next::Ask } else { Next::Nothing };
        }
        // A follower: its leader must stay heard and keep renewing. A little more
        // than an election timeout of silence, then a random part of another,
        // spreads the followers that would otherwise all stand at once.
        let silent =
            leader.is_none_or(|l| !self.transport.heard_within(l, election + election / 4));
        let expired = s.quiet_until.is_some_and(|until| now >= until);
        if (silent || expired) && !s.wake_scheduled {
            s.wake_scheduled = true;
            let generation = s.generation;
            drop(s);
            let me = Arc::clone(self);
            let delay = jitter(self.group, election);
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if me.state.lock().generation == generation {
                    debug!(group = me.group, "leader silent: the group wakes to elect");
                    me.wake();
                }
            });
        }
        Next::Nothing
    }

    /// On the leader: asks every follower to go quiet (or, quiet already, to stay
    /// quiet for another lease). Goes quiet if all agree and nothing woke the
    /// group meanwhile; a quiet leader wakes when any follower refuses.
    pub async fn ask(self: &Arc<Self>, times: QuietTimes) {
        let (generation, asleep) = {
            let mut s = self.state.lock();
            if s.attempting {
                return;
            }
            s.attempting = true;
            (s.generation, s.asleep)
        };
        let agreed = self.ask_followers(times).await;
        match (asleep, agreed) {
            (false, true) => {
                self.sleep_if(generation, None);
            }
            (true, true) => self.state.lock().renewed_at = Some(Instant::now()),
            (true, false) => self.wake(),
            (false, false) => {}
        }
        self.state.lock().attempting = false;
    }

    /// Whether every follower agreed to a quiet of `times.expire_after`; false
    /// when the leader has anything left to replicate or apply.
    async fn ask_followers(&self, times: QuietTimes) -> bool {
        let (request, followers) = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow_watched();
            let me = m.id;
            let Some(last) = m.last_log_index else {
                return false;
            };
            let settled = m.state == ServerState::Leader
                && m.current_leader == Some(me)
                && m.local_committed.as_ref().map(|c| c.index) == Some(last)
                && m.last_applied.as_ref().map(|a| a.index) == Some(last);
            if !settled {
                return false;
            }
            let followers: Vec<u64> = m
                .membership_config
                .membership()
                .voter_ids()
                .filter(|v| *v != me)
                .collect();
            let replication = m.replication.as_ref();
            let all_matched = followers.iter().all(|f| {
                replication
                    .and_then(|r| r.get(f))
                    .and_then(|id| id.as_ref())
                    .is_some_and(|id| id.index == last)
            });
            if !all_matched {
                return false;
            }
            let request = QuietRequest {
                term: m.current_term,
                last_index: last,
                lease_ms: times.expire_after.as_millis() as u64,
            };
            (request, followers)
        };
        let timeout = Duration::from_millis(self.raft.config().heartbeat_interval.max(1) * 4);
        let payload = request.encode();
        let answers = futures_util::future::join_all(followers.iter().map(|f| {
            self.transport
                .call(*f, wire::QUIET, self.group, payload.clone(), timeout)
        }))
        .await;
        answers
            .iter()
            .all(|a| a.as_ref().is_ok_and(|b| b.first() == Some(&1)))
    }

    /// On a follower: a leader's request to go (or stay) quiet. Agrees, stops
    /// ticking and takes the request's lease when `from` is the leader it
    /// follows, in the same term, and its log ends at the same index, all of it
    /// committed and applied.
    pub fn on_request(&self, from: u64, payload: Bytes) -> Result<Bytes, String> {
        let request = QuietRequest::decode(payload)?;
        let generation = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow_watched();
            let last = Some(request.last_index);
            let same = m.state == ServerState::Follower
                && m.current_leader == Some(from)
                && m.current_term == request.term
                && m.last_log_index == last
                && m.local_committed.as_ref().map(|c| c.index) == last
                && m.last_applied.as_ref().map(|a| a.index) == last;
            if !same {
                return Ok(Bytes::from_static(&[0]));
            }
            self.state.lock().generation
        };
        let until = Instant::now() + request.lease();
        let quiet = self.sleep_if(generation, Some(until)) || {
            let mut s = self.state.lock();
            if s.asleep {
                s.quiet_until = Some(until);
            }
            s.asleep
        };
        Ok(Bytes::from_static(if quiet { &[1] } else { &[0] }))
    }
}

/// The broker's quiet loop, every `every` (a heartbeat interval): each group of
/// `groups()` is watched, and its leader asks its followers when it should.
pub async fn run<F>(groups: F, every: Duration, times: QuietTimes)
where
    F: Fn() -> Vec<Arc<Quiet>> + Send + 'static,
{
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = Instant::now();
        for quiet in groups() {
            if quiet.watch(now, &times) == Next::Ask {
                tokio::spawn(async move { quiet.ask(times).await });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_request_round_trips_and_refuses_other_lengths() {
        let r = QuietRequest {
            term: 7,
            last_index: 1234,
            lease_ms: 10_000,
        };
        assert_eq!(QuietRequest::decode(r.encode()), Ok(r));
        assert!(QuietRequest::decode(Bytes::from_static(&[0; 23])).is_err());
        assert!(QuietRequest::decode(Bytes::from_static(&[0; 25])).is_err());
        let greedy = QuietRequest {
            lease_ms: u64::MAX,
            ..r
        };
        assert_eq!(greedy.lease(), LEASE_MAX);
    }

    #[test]
    fn jitter_stays_within_its_span() {
        let span = Duration::from_millis(1500);
        for g in 0..1000 {
            assert!(jitter(g, span) < span);
        }
    }
}
