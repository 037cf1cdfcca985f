//! [`HostGroup`]: a rendezvous of the ranks of one process (threads) on the host, with a
//! timeout: scalar all-reduces (exact in `f64`), all-gathers of bytes and barriers.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{CollectiveError, ReduceOp};

/// What one rank brings to an operation.
#[derive(Debug, Clone)]
enum Payload {
    Scalars(Vec<f64>, ReduceOp),
    Bytes(Vec<u8>),
    Gathered(Vec<Vec<u8>>),
}

/// An operation's result, shared by the ranks.
type Outcome = Result<Payload, CollectiveError>;

#[derive(Debug, Default)]
struct State {
    /// Completed operations so far.
    generation: u64,
    /// This operation's contributions by rank.
    slots: Vec<Option<(String, Payload)>>,
    /// The last completed operation's generation and result.
    last: Option<(u64, Outcome)>,
}

/// The ranks `0..world` of one process meeting on the host. Shared (`Arc`) by the ranks'
/// threads; each operation waits at most `timeout` for the others.
#[derive(Debug)]
pub struct HostGroup {
    world: usize,
    timeout: Duration,
    state: Mutex<State>,
    arrived: Condvar,
}

impl HostGroup {
    /// A group of `world` ranks whose operations wait at most `timeout`.
    pub fn new(world: usize, timeout: Duration) -> Self {
        Self {
            world,
            timeout,
            state: Mutex::new(State {
                slots: vec![None; world],
                ..State::default()
            }),
            arrived: Condvar::new(),
        }
    }

    /// The number of ranks.
    pub fn world_size(&self) -> usize {
        self.world
    }

    /// Rank `rank`'s part of a scalar all-reduce.
    ///
    /// # Errors
    /// [`CollectiveError`]: a timeout, or ranks disagreeing on the operation or its length.
    pub fn all_reduce_scalars(
        &self,
        rank: usize,
        what: &str,
        values: &mut [f64],
        op: ReduceOp,
    ) -> Result<(), CollectiveError> {
        match self.meet(rank, what, Payload::Scalars(values.to_vec(), op))? {
            Payload::Scalars(reduced, _) => values.copy_from_slice(&reduced),
            _ => unreachable!("a scalar operation yields scalars"),
        }
        Ok(())
    }

    /// Rank `rank`'s part of an all-gather of bytes.
    ///
    /// # Errors
    /// As [`Self::all_reduce_scalars`].
    pub fn all_gather_bytes(
        &self,
        rank: usize,
        what: &str,
        bytes: &[u8],
    ) -> Result<Vec<Vec<u8>>, CollectiveError> {
        match self.meet(rank, what, Payload::Bytes(bytes.to_vec()))? {
            Payload::Gathered(all) => Ok(all),
            _ => unreachable!("a gather yields every rank's bytes"),
        }
    }

    /// Rank `rank`'s part of a barrier.
    ///
    /// # Errors
    /// As [`Self::all_reduce_scalars`].
    pub fn barrier(&self, rank: usize, what: &str) -> Result<(), CollectiveError> {
        self.meet(rank, what, Payload::Scalars(Vec::new(), ReduceOp::Sum))
            .map(drop)
    }

    /// Adds this rank's contribution; the last rank to arrive computes the result and wakes
    /// the others.
    fn meet(&self, rank: usize, what: &str, payload: Payload) -> Outcome {
        let deadline = Instant::now() + self.timeout;
        let mut state = self.lock();
        let generation = state.generation;
        state.slots[rank] = Some((what.to_string(), payload));
        if state.slots.iter().all(Option::is_some) {
            let slots: Vec<(String, Payload)> =
                state.slots.iter_mut().flat_map(Option::take).collect();
            let outcome = combine(generation, &slots);
            state.last = Some((generation, outcome.clone()));
            state.generation += 1;
            self.arrived.notify_all();
            return outcome;
        }
        while state.generation == generation {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let missing = (0..self.world)
                    .filter(|&r| state.slots[r].is_none())
                    .collect();
                return Err(CollectiveError::Timeout {
                    rank,
                    missing,
                    what: what.to_string(),
                    seconds: self.timeout.as_secs_f64(),
                });
            }
            state = self
                .arrived
                .wait_timeout(state, left)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
        match &state.last {
            Some((g, outcome)) if *g == generation => outcome.clone(),
            _ => unreachable!("a rank waits for the operation it joined"),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A rank that panicked while holding the lock left the state consistent (every
        // update above is a single assignment); the others go on and time out.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The result of one operation from every rank's contribution (in rank order).
fn combine(seq: u64, slots: &[(String, Payload)]) -> Outcome {
    let (what, first) = &slots[0];
    for (peer, (peer_what, payload)) in slots.iter().enumerate().skip(1) {
        if peer_what != what {
            return Err(CollectiveError::OutOfStep {
                rank: 0,
                what: what.clone(),
                seq,
                peer,
                peer_what: peer_what.clone(),
                peer_seq: seq,
            });
        }
        if let (Payload::Scalars(a, _), Payload::Scalars(b, _)) = (first, payload) {
            if a.len() != b.len() {
                return Err(CollectiveError::LengthMismatch {
                    what: what.clone(),
                    rank: 0,
                    len: a.len(),
                    peer,
                    peer_len: b.len(),
                });
            }
        }
    }
    Ok(match first {
        Payload::Bytes(_) | Payload::Gathered(_) => Payload::Gathered(
            slots
                .iter()
                .map(|(_, p)| match p {
                    Payload::Bytes(b) => b.clone(),
                    _ => Vec::new(),
                })
                .collect(),
        ),
        Payload::Scalars(first, op) => {
            let mut acc = first.clone();
            for (_, payload) in &slots[1..] {
                if let Payload::Scalars(v, _) = payload {
                    for (a, &x) in acc.iter_mut().zip(v) {
                        *a = op.apply(*a, x);
                    }
                }
            }
            Payload::Scalars(acc, *op)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn ranks_sum_and_broadcast() {
        let group = Arc::new(HostGroup::new(3, Duration::from_secs(10)));
        let handles: Vec<_> = (0..3)
            .map(|rank| {
                let group = group.clone();
                std::thread::spawn(move || {
                    let mut v = [rank as f64, 1.0];
                    group
                        .all_reduce_scalars(rank, "sum", &mut v, ReduceOp::Sum)
                        .unwrap();
                    let mut m = [rank as f64];
                    group
                        .all_reduce_scalars(rank, "max", &mut m, ReduceOp::Max)
                        .unwrap();
                    let bytes = group
                        .all_gather_bytes(rank, "bytes", &vec![rank as u8; rank + 1])
                        .unwrap();
                    group.barrier(rank, "end").unwrap();
                    (v, m, bytes)
                })
            })
            .collect();
        for h in handles {
            let (v, m, bytes) = h.join().unwrap();
            assert_eq!(v, [3.0, 3.0]);
            assert_eq!(m, [2.0]);
            assert_eq!(bytes, vec![vec![0], vec![1, 1], vec![2, 2, 2]]);
        }
    }

    #[test]
    fn a_missing_rank_is_named_after_the_timeout() {
        let group = Arc::new(HostGroup::new(3, Duration::from_millis(200)));
        let g = group.clone();
        let other = std::thread::spawn(move || g.barrier(1, "gradients"));
        let err = group.barrier(0, "gradients").unwrap_err();
        let CollectiveError::Timeout { missing, .. } = &err else {
            panic!("{err}");
        };
        assert_eq!(missing, &vec![2]);
        assert!(err.to_string().contains("[2]"), "{err}");
        assert!(other.join().unwrap().is_err());
    }

    #[test]
    fn different_operations_are_reported() {
        let group = Arc::new(HostGroup::new(2, Duration::from_secs(10)));
        let g = group.clone();
        let other = std::thread::spawn(move || g.barrier(1, "metrics"));
        let err = group.barrier(0, "gradients").unwrap_err();
        assert!(matches!(err, CollectiveError::OutOfStep { .. }), "{err}");
        assert!(other.join().unwrap().is_err());
    }
}
