//! Preferred leader election on request (ElectLeaders): the partition's leader
//! hands leadership to the first of its replicas once that replica holds the
//! whole log. The request may reach any broker; the leader's broker does the
//! transfer (over the inter-broker transport when it is another broker).

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use sluice_replication::Replica;
use tracing::info;

/// Why a preferred replica was not made leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElectError {
    /// The preferred replica is not connected or not caught up.
    PreferredNotAvailable(String),
    /// The broker asked does not lead the partition (leadership moved).
    NotLeader,
    /// The transfer did not finish in time.
    TimedOut,
}

impl ElectError {
    fn code(&self) -> u8 {
        match self {
            ElectError::PreferredNotAvailable(_) => 1,
            ElectError::NotLeader => 2,
            ElectError::TimedOut => 3,
        }
    }
}

/// Pause between checks while the preferred replica catches up or takes over.
const POLL: Duration = Duration::from_millis(20);

/// On the leader: moves leadership of `replica` to node `target`, waiting (at
/// most `timeout`) for it to hold the whole log and then to lead.
pub async fn elect_preferred(
    replica: &Replica,
    target: u64,
    connected: impl Fn(u64) -> bool,
    timeout: Duration,
) -> Result<(), ElectError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let Some(raft) = replica.raft() else {
        return Err(ElectError::NotLeader);
    };
    loop {
        if !replica.is_leader() {
            return Err(ElectError::NotLeader);
        }
        if !connected(target) {
            return Err(ElectError::PreferredNotAvailable(format!(
                "the preferred replica {target} is not connected"
            )));
        }
        if replica.follower_caught_up(target) {
            break;
        }
        if tokio::time::Instant::now() + POLL >= deadline {
            return Err(ElectError::PreferredNotAvailable(format!(
                "the preferred replica {target} is not in sync"
            )));
        }
        tokio::time::sleep(POLL).await;
    }
    info!(
        partition = replica.name(),
        to = target,
        "electing the preferred replica"
    );
    replica.wake();
    raft.trigger()
        .transfer_leader(target)
        .await
        .map_err(|e| ElectError::PreferredNotAvailable(e.to_string()))?;
    while replica.leader() != Some(target) {
        if tokio::time::Instant::now() >= deadline {
            return Err(ElectError::TimedOut);
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

/// The inter-broker request: the target node and the time allowed.
pub fn encode_request(target: u64, timeout: Duration) -> Bytes {
    let mut out = BytesMut::with_capacity(12);
    out.put_u64(target);
    out.put_u32(u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX));
    out.freeze()
}

pub fn decode_request(mut payload: Bytes) -> Result<(u64, Duration), String> {
    if payload.remaining() != 12 {
        return Err("malformed election request".into());
    }
    let target = payload.get_u64();
    let timeout = Duration::from_millis(u64::from(payload.get_u32()));
    Ok((target, timeout))
}

pub fn encode_outcome(outcome: &Result<(), ElectError>) -> Bytes {
    let mut out = BytesMut::new();
    match outcome {
        Ok(()) => out.put_u8(0),
        Err(e) => {
            out.put_u8(e.code());
            if let ElectError::PreferredNotAvailable(m) = e {
                out.put_slice(m.as_bytes());
            }
        }
    }
    out.freeze()
}

pub fn decode_outcome(mut answer: Bytes) -> Result<(), ElectError> {
    if !answer.has_remaining() {
        return Err(ElectError::TimedOut);
    }
    match answer.get_u8() {
        0 => Ok(()),
        1 => Err(ElectError::PreferredNotAvailable(
            String::from_utf8_lossy(&answer).into_owned(),
        )),
        2 => Err(ElectError::NotLeader),
        _ => Err(ElectError::TimedOut),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_outcomes_round_trip_and_short_input_is_refused() {
        let (target, timeout) =
            decode_request(encode_request(3, Duration::from_secs(2))).expect("decode");
        assert_eq!((target, timeout), (3, Duration::from_secs(2)));
        assert!(decode_request(Bytes::from_static(b"short")).is_err());
        for outcome in [
            Ok(()),
            Err(ElectError::PreferredNotAvailable("not in sync".into())),
            Err(ElectError::NotLeader),
            Err(ElectError::TimedOut),
        ] {
            assert_eq!(decode_outcome(encode_outcome(&outcome)), outcome);
        }
        assert_eq!(decode_outcome(Bytes::new()), Err(ElectError::TimedOut));
    }
}
