//! Where a quick call (a query, [`crate::dispatch::is_quick`]) runs: on the I/O worker
//! that read it, or under `block_in_place`.
//!
//! `block_in_place` hands the worker's scheduler to another thread for the length of the
//! call: two thread wake-ups and about 6 µs of CPU per call on this project's machines,
//! half of a `lookupByName`'s whole cost in the daemon. Most queries take a few
//! microseconds (a plugin process's: a socket round trip), so they run on the I/O worker
//! directly. A plugin process's call that has no reply after
//! [`rvirt_host::remote::ESCAPE_AFTER`] leaves the worker for the rest of its wait (the
//! remote driver calls `block_in_place` then, see [`leave_worker`]): a hung plugin holds
//! its caller until the call deadline, as before, but an I/O worker for a few milliseconds
//! only. Queries run under `block_in_place` from the start when:
//!
//! - this procedure was seen to be slow: its last call took more than [`SLOW_CALL`] (the
//!   mark is cleared once a call of it is fast again, so the choice follows the driver), or
//! - a call running on an I/O worker has been running for more than [`STUCK`] (a driver
//!   that hangs in-process): from then on every query leaves the workers, so a hung call
//!   holds one worker at most and the others keep serving every connection.

use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A query that took longer than this runs under `block_in_place` from then on.
pub const SLOW_CALL: Duration = Duration::from_millis(1);
/// An inline call running for longer than this sends every later query off the workers.
pub const STUCK: Duration = Duration::from_millis(10);

/// Procedure numbers tracked for slowness (the table ends well below).
const PROCEDURES: usize = 1024;
/// Threads that may run inline calls at once (the runtime's workers: at most 4; the
/// threads `block_in_place` moves a worker's scheduler to take a slot too).
const SLOTS: usize = 64;

static SLOW: [AtomicBool; PROCEDURES] = [const { AtomicBool::new(false) }; PROCEDURES];
/// Per slot: when its running inline call started (µs since [`epoch`] + 1), 0 when idle.
static STARTED: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];
static TAKEN: [AtomicBool; SLOTS] = [const { AtomicBool::new(false) }; SLOTS];

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn micros_now() -> u64 {
    u64::try_from(epoch().elapsed().as_micros()).unwrap_or(u64::MAX - 1) + 1
}

/// This thread's slot in [`STARTED`], released when the thread ends.
struct Slot(Option<usize>);

impl Slot {
    fn claim() -> Slot {
        Slot((0..SLOTS).find(|&i| {
            TAKEN[i]
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        }))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(i) = self.0 {
            STARTED[i].store(0, Ordering::Release);
            TAKEN[i].store(false, Ordering::Release);
        }
    }
}

thread_local! {
    static SLOT: Slot = Slot::claim();
    static INLINE: Cell<bool> = const { Cell::new(false) };
    static OWN_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Marks the calling thread as one that serves a single connection outside the runtime
/// (a plugin host's connection thread): there is no worker to keep free there, so
/// [`run_quick`] just runs its calls (`block_in_place` would run them in place too).
pub fn serve_on_own_thread() {
    OWN_THREAD.with(|c| c.set(true));
}

/// Whether an inline call has been running for longer than [`STUCK`].
fn stuck(now: u64) -> bool {
    any_stuck(&STARTED, now)
}

/// Whether one of `slots` (start times as in [`STARTED`]) is older than [`STUCK`] at `now`.
fn any_stuck(slots: &[AtomicU64], now: u64) -> bool {
    let limit = STUCK.as_micros() as u64;
    slots.iter().any(|s| {
        let t = s.load(Ordering::Acquire);
        t != 0 && now.saturating_sub(t) > limit
    })
}

fn is_slow(procedure: i32) -> bool {
    usize::try_from(procedure)
        .ok()
        .and_then(|i| SLOW.get(i))
        .is_none_or(|s| s.load(Ordering::Relaxed))
}

fn record(procedure: i32, took: Duration) {
    if let Some(s) = usize::try_from(procedure).ok().and_then(|i| SLOW.get(i)) {
        let slow = took > SLOW_CALL;
        if s.load(Ordering::Relaxed) != slow {
            s.store(slow, Ordering::Relaxed);
        }
    }
}

/// The remote driver's way off the I/O worker for a plugin process's call that waits long:
/// the worker's other tasks go to another thread, and this call no longer counts as a
/// stuck inline call.
fn leave_worker(wait: &mut dyn FnMut()) {
    SLOT.with(|s| {
        if let Some(i) = s.0 {
            STARTED[i].store(0, Ordering::Release);
        }
    });
    tokio::task::block_in_place(wait)
}

/// Runs the quick call `f` of `procedure`, inline or under `block_in_place` as the
/// module explains. `remote`: the connection's driver is in a plugin process.
pub fn run_quick<R>(procedure: i32, remote: bool, f: impl FnOnce() -> R) -> R {
    if OWN_THREAD.with(Cell::get) {
        return f();
    }
    let now = micros_now();
    let inline = !is_slow(procedure)
        && !INLINE.with(Cell::get)
        && !stuck(now)
        && SLOT.with(|s| s.0).is_some_and(|i| {
            STARTED[i].store(now, Ordering::Release);
            true
        });
    let t0 = Instant::now();
    let r = if inline {
        INLINE.with(|c| c.set(true));
        // clears the mark even if the call unwinds
        struct Done;
        impl Drop for Done {
            fn drop(&mut self) {
                INLINE.with(|c| c.set(false));
                SLOT.with(|s| {
                    if let Some(i) = s.0 {
                        STARTED[i].store(0, Ordering::Release);
                    }
                });
            }
        }
        let _done = Done;
        if remote {
            rvirt_host::remote::with_escape(leave_worker, f)
        } else {
            f()
        }
    } else {
        tokio::task::block_in_place(f)
    };
    record(procedure, t0.elapsed());
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_procedure_leaves_the_worker_until_it_is_fast_again() {
        // procedure numbers no other test uses
        let (p, q) = (1001, 1002);
        let on_worker = || INLINE.with(Cell::get);
        assert!(
            run_quick(p, false, on_worker),
            "a fresh procedure runs inline"
        );
        run_quick(p, false, || std::thread::sleep(SLOW_CALL * 2));
        assert!(run_quick(q, false, on_worker), "others are not affected");
        assert!(
            !run_quick(p, false, on_worker),
            "a slow one runs off the worker"
        );
        // that call, made under block_in_place, was fast: the mark is gone
        assert!(run_quick(p, false, on_worker));
        assert!(
            run_quick(q, true, on_worker),
            "a plugin process's quick calls run inline too"
        );
        assert!(
            !run_quick(5000, false, on_worker),
            "an unknown number never runs inline"
        );
    }

    #[test]
    fn a_thread_of_its_own_runs_its_calls_without_bookkeeping() {
        std::thread::spawn(|| {
            // a procedure number no other test uses
            let p = 1003;
            serve_on_own_thread();
            assert!(!run_quick(p, false, || INLINE.with(Cell::get)));
            run_quick(p, false, || std::thread::sleep(SLOW_CALL * 2));
            assert!(!is_slow(p), "nothing is recorded");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_stuck_inline_call_is_seen() {
        // slots of its own: the other test's inline calls run in the global ones meanwhile
        let slots = [const { AtomicU64::new(0) }; 2];
        let now = micros_now() + STUCK.as_micros() as u64 * 3;
        assert!(!any_stuck(&slots, now), "idle slots");
        slots[1].store(now - STUCK.as_micros() as u64 / 2, Ordering::Release);
        assert!(!any_stuck(&slots, now), "a call younger than STUCK");
        slots[0].store(now - STUCK.as_micros() as u64 * 2, Ordering::Release);
        assert!(any_stuck(&slots, now));
        slots[0].store(0, Ordering::Release);
        assert!(!any_stuck(&slots, now), "a released slot is idle");
    }
}
