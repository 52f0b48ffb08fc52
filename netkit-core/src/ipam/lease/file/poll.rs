//! Watching a file store: poll the directory and compare snapshots.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use tokio::time::MissedTickBehavior;

use super::super::{Lease, LeaseError, LeaseEvent, LeaseWatch};
use super::FileLeaseStore;

/// Live leases by subnet number.
type Snapshot = BTreeMap<u128, Lease>;

struct State {
    store: FileLeaseStore,
    last: Snapshot,
    pending: VecDeque<LeaseEvent>,
    ticker: tokio::time::Interval,
}

/// The watch starting at `first` (the live leases read just before): its snapshot, then the
/// changes from `first` on, polling every `interval`.
pub(super) fn watch(store: FileLeaseStore, first: Snapshot, interval: Duration) -> LeaseWatch {
    let snapshot = first.values().cloned().collect();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let state = State {
        store,
        last: first,
        pending: VecDeque::new(),
        ticker,
    };
    LeaseWatch::new(
        snapshot,
        futures::stream::unfold(state, |mut st| async move {
            loop {
                if let Some(event) = st.pending.pop_front() {
                    return Some((Ok(event), st));
                }
                st.ticker.tick().await;
                match st.store.live().await {
                    Ok(now) => {
                        st.pending.extend(diff(&st.last, &now));
                        st.last = now;
                    }
                    Err(e) => return Some((Err::<LeaseEvent, LeaseError>(e), st)),
                }
            }
        }),
    )
}

/// The events that turn `old` into `new`: removals first, then additions and changes.
fn diff(old: &Snapshot, new: &Snapshot) -> Vec<LeaseEvent> {
    let mut events = Vec::new();
    for (i, was) in old {
        match new.get(i) {
            Some(is) if is.meta.node == was.meta.node => {}
            _ => events.push(LeaseEvent::Removed(was.clone())),
        }
    }
    for (i, is) in new {
        match old.get(i) {
            Some(was) if was.meta.node == is.meta.node => {
                if was != is {
                    events.push(LeaseEvent::Changed(is.clone()));
                }
            }
            _ => events.push(LeaseEvent::Added(is.clone())),
        }
    }
    events
}
