//! How a caller steers and watches long work: a [`CancelToken`] any thread may trigger,
//! and [`Event`]s delivered to an [`Observer`] on a thread of their own, so a slow
//! observer never holds up the engine (progress is coalesced while it is busy).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, ErrorCode, Result};
use crate::model::{ItemResult, ObjectGuid, Outcome, RunKind};

/// Cancels long work from any thread; the engine stops at the next item boundary.
/// Cheap to clone: clones share one flag.
#[derive(Debug, Clone, Default)]
pub struct CancelToken {
    inner: Arc<CancelInner>,
}

#[derive(Debug, Default)]
struct CancelInner {
    cancelled: AtomicBool,
    notify: tokio::sync::Notify,
}

impl CancelToken {
    /// A token not yet triggered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the work to stop; safe from any thread, any number of times.
    pub fn cancel(&self) {
        self.inner.cancelled.store(true, Ordering::SeqCst);
        self.inner.notify.notify_waiters();
    }

    /// Whether [`CancelToken::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::SeqCst)
    }

    /// Resolves once the token is cancelled (at once when it already is).
    pub async fn cancelled(&self) {
        loop {
            let notified = self.inner.notify.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }

    /// Sleeps for `d`, or less when cancelled.
    ///
    /// # Errors
    /// [`ErrorCode::Cancelled`] when cancelled before `d` passed.
    pub async fn sleep(&self, d: std::time::Duration) -> Result<()> {
        tokio::select! {
            _ = tokio::time::sleep(d) => Ok(()),
            _ = self.cancelled() => Err(Error::new(ErrorCode::Cancelled, "cancelled while waiting")),
        }
    }
}

/// Counts of a finished run, by outcome.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct RunCounts {
    /// Items that succeeded.
    pub succeeded: usize,
    /// Items that failed.
    pub failed: usize,
    /// Items skipped (refused before any write).
    pub skipped: usize,
    /// Items held by the safety threshold.
    pub held: usize,
    /// Items not started because the run was cancelled.
    pub cancelled: usize,
}

impl RunCounts {
    /// The counts of these items.
    pub fn of(items: &[ItemResult]) -> RunCounts {
        let mut c = RunCounts::default();
        for i in items {
            match i.outcome {
                Outcome::Succeeded => c.succeeded += 1,
                Outcome::Failed => c.failed += 1,
                Outcome::Skipped => c.skipped += 1,
                Outcome::Held => c.held += 1,
                Outcome::Cancelled => c.cancelled += 1,
            }
        }
        c
    }
}

/// Something the engine reports while it works.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// How far a run has come (coalesced: a slow observer sees the latest).
    Progress {
        /// The run.
        run_id: Uuid,
        /// Items finished.
        done: u64,
        /// Items in the run.
        total: u64,
        /// The local user being worked on, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        current: Option<String>,
    },
    /// One item finished.
    ItemFinished {
        /// The run.
        run_id: Uuid,
        /// Its position in the plan (1-based).
        seq: u32,
        /// What happened.
        item: Box<ItemResult>,
    },
    /// A run finished (completely, or cancelled part way).
    RunFinished {
        /// The run.
        run_id: Uuid,
        /// What kind of run.
        kind: RunKind,
        /// Counts by outcome.
        counts: RunCounts,
    },
    /// One round of the sync loop finished.
    SyncRoundFinished {
        /// The round's run id.
        run_id: Uuid,
        /// Counts by outcome.
        counts: RunCounts,
        /// Passwords delivered in the round.
        passwords_delivered: usize,
        /// The error code when the round failed as a whole.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error_code: Option<ErrorCode>,
        /// Its message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A queued password was set online.
    PasswordDelivered {
        /// The local user.
        local_guid: ObjectGuid,
    },
    /// The tenant refused a queued password for good (until the user changes it again).
    PasswordRefused {
        /// The local user.
        local_guid: ObjectGuid,
        /// Why the tenant refused it (`password_policy` when its rules did).
        error_code: ErrorCode,
    },
    /// `setup` waits for the administrator to sign in: open `verification_uri` and
    /// enter `user_code`.
    SignIn {
        /// The code to enter.
        user_code: String,
        /// Where to enter it.
        verification_uri: String,
        /// The identity platform's own instructions.
        message: String,
        /// Seconds before the code expires.
        expires_in_secs: u64,
    },
    /// Something the administrator should know that did not stop the work.
    Warning {
        /// The code of the problem.
        code: ErrorCode,
        /// What happened.
        message: String,
    },
}

/// Receives events. Called on the engine's event thread (never on a runtime worker), one
/// event at a time, in order; taking long only makes progress events coalesce.
pub trait Observer: Send + Sync {
    /// One event.
    fn event(&self, event: &Event);
}

impl<F: Fn(&Event) + Send + Sync> Observer for F {
    fn event(&self, event: &Event) {
        self(event)
    }
}

#[derive(Default)]
struct Queue {
    events: VecDeque<Event>,
    closed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
}

/// Delivers events to an observer from a thread of its own. Pushing never blocks on the
/// observer; dropping the sink delivers what is queued, then ends the thread.
pub struct EventSink {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSink").finish_non_exhaustive()
    }
}

impl EventSink {
    /// A sink delivering to `observer`.
    ///
    /// # Errors
    /// [`ErrorCode::Internal`] when the delivery thread cannot be started.
    pub fn new(observer: Arc<dyn Observer>) -> Result<EventSink> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("o365-events".into())
            .spawn(move || {
                loop {
                    let next = {
                        let mut q = s.queue.lock().unwrap_or_else(|p| p.into_inner());
                        loop {
                            if let Some(e) = q.events.pop_front() {
                                break Some(e);
                            }
                            if q.closed {
                                break None;
                            }
                            q = s.ready.wait(q).unwrap_or_else(|p| p.into_inner());
                        }
                    };
                    match next {
                        Some(e) => {
                            // An observer that panics loses its own events, never the run.
                            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                observer.event(&e)
                            }));
                        }
                        None => return,
                    }
                }
            })
            .map_err(|e| Error::internal(format!("cannot start the event thread: {e}")))?;
        Ok(EventSink {
            shared,
            thread: Some(thread),
        })
    }

    fn push(&self, e: Event) {
        let mut q = self.shared.queue.lock().unwrap_or_else(|p| p.into_inner());
        // Progress not yet delivered is replaced by the newer one (its place moves to
        // the back, so the observer never sees progress go backwards).
        if let Event::Progress { run_id, .. } = &e
            && let Some(pos) = q
                .events
                .iter()
                .position(|x| matches!(x, Event::Progress { run_id: r, .. } if r == run_id))
        {
            q.events.remove(pos);
        }
        q.events.push_back(e);
        drop(q);
        self.shared.ready.notify_one();
    }
}

impl Drop for EventSink {
    fn drop(&mut self) {
        self.shared
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .closed = true;
        self.shared.ready.notify_one();
        if let Some(t) = self.thread.take()
            && t.thread().id() != std::thread::current().id()
        {
            let _ = t.join();
        }
    }
}

/// What a long operation is given: a cancellation token and where events go. `Default`
/// is "never cancelled, nobody watching".
#[derive(Debug, Clone, Default)]
pub struct Control {
    /// Triggers cancellation.
    pub cancel: CancelToken,
    events: Option<Arc<EventSink>>,
    lease_wait: Option<std::time::Duration>,
}

impl Control {
    /// No cancellation, no events.
    pub fn none() -> Control {
        Control::default()
    }

    /// Events go to `observer` (on a thread of their own); cancelled through `cancel`.
    ///
    /// # Errors
    /// [`ErrorCode::Internal`] when the event thread cannot be started.
    pub fn with_observer(cancel: CancelToken, observer: Arc<dyn Observer>) -> Result<Control> {
        Ok(Control {
            cancel,
            events: Some(Arc::new(EventSink::new(observer)?)),
            lease_wait: None,
        })
    }

    /// Cancelled through `cancel`, nobody watching.
    pub fn with_cancel(cancel: CancelToken) -> Control {
        Control {
            cancel,
            events: None,
            lease_wait: None,
        }
    }

    /// Work held by another process (a sync run, a delivery round, a plan being applied,
    /// the domain flow) is waited for up to `wait` instead of refused at once with
    /// [`ErrorCode::WorkHeld`]; the wait ends early when the call is cancelled.
    #[must_use]
    pub fn with_lease_wait(mut self, wait: std::time::Duration) -> Control {
        self.lease_wait = Some(wait);
        self
    }

    /// How long held work is waited for (`None`: not at all).
    pub fn lease_wait(&self) -> Option<std::time::Duration> {
        self.lease_wait
    }

    /// Reports an event (never blocks on the observer).
    pub fn emit(&self, event: Event) {
        if let Some(s) = &self.events {
            s.push(event);
        }
    }

    /// Whether the caller asked to stop.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_coalesces_behind_a_slow_observer_and_nothing_else_is_lost() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let g2 = gate.clone();
        let observer = move |e: &Event| {
            let (m, c) = &*g2;
            let mut open = m.lock().unwrap();
            while !*open {
                open = c.wait(open).unwrap();
            }
            s2.lock().unwrap().push(e.clone());
        };
        let ctl = Control::with_observer(CancelToken::new(), Arc::new(observer)).unwrap();
        let run_id = Uuid::nil();
        for done in 0..100 {
            ctl.emit(Event::Progress {
                run_id,
                done,
                total: 100,
                current: None,
            });
        }
        ctl.emit(Event::Warning {
            code: ErrorCode::Throttled,
            message: "w".into(),
        });
        let (m, c) = &*gate;
        *m.lock().unwrap() = true;
        c.notify_all();
        drop(ctl);
        let seen = seen.lock().unwrap();
        // The first progress may have been taken before the observer blocked; the rest
        // collapsed into the latest.
        assert!(seen.len() <= 3, "{seen:?}");
        assert!(matches!(
            seen[seen.len() - 2],
            Event::Progress { done: 99, .. }
        ));
        assert!(matches!(seen.last(), Some(Event::Warning { .. })));
    }

    #[tokio::test]
    async fn a_token_cancels_a_wait_from_another_thread() {
        let t = CancelToken::new();
        let t2 = t.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            t2.cancel();
        });
        let e = t
            .sleep(std::time::Duration::from_secs(30))
            .await
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::Cancelled);
        assert!(t.is_cancelled());
    }
}
