//! Statements of requests that arrive together, run together.
//!
//! A statement on its own costs PostgreSQL a round trip, its parsing and execution start-up,
//! a transaction and, for a write, a wait for its commit to reach the disk; with many requests
//! at once, that per-statement work is most of what the server spends on each. A
//! [`BatchQueue`] runs every request of one kind ([`Job`]) through a few worker tasks: a
//! request that finds a worker free is run at once, alone; while every worker is busy,
//! requests wait in the queue, and the next worker to be free takes all that wait (up to a
//! maximum) and runs them together, in one statement. Batches thus form only under load, add
//! no wait of their own, and grow with the load. Each request still gets its own answer: a
//! [`Job`] says how to run one request alone and several together, and which of those run
//! together must still run alone (an insert the statement skipped, say); should the statement
//! for several fail, each of them runs alone.
//!
//! A caller may stop waiting (its request was cancelled, or its deadline passed), as it could
//! drop a statement of its own: a request whose caller is gone before a worker takes it is not
//! run, and a batch whose callers are all gone is abandoned half-way, its connection checked
//! before it is used again (or dropped, if the server does not answer), as a dropped lone
//! statement's is. So a worker never waits on a stalled server for longer than its callers do.

use std::sync::{Arc, Mutex};

use calendar_core::RepositoryError;
use sqlx::postgres::PgConnection;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::connections::{Connections, Lease};
use super::error::SharedError;
use crate::sync::lock;

/// The result a request's caller gets.
pub(super) type Answer<J> = Result<<J as Job>::Output, RepositoryError>;

/// A kind of request that a [`BatchQueue`] runs, alone or with others of its kind.
pub(super) trait Job: Send + Sync + Sized + 'static {
    /// What the request's caller gets when it succeeds.
    type Output: Send + 'static;

    /// Runs this request alone.
    fn alone(&self, connection: &mut PgConnection) -> impl Future<Output = Answer<Self>> + Send;

    /// Runs `batch` (two requests or more, in arrival order) in one statement: the answer of
    /// each, in the same order, or `None` for one that must then run [`alone`](Self::alone).
    /// An error fails the statement, not the requests: each then runs alone.
    fn together(
        connection: &mut PgConnection,
        batch: &[&Self],
    ) -> impl Future<Output = Result<Vec<Option<Answer<Self>>>, RepositoryError>> + Send;
}

/// A request in a [`BatchQueue`], and where its answer goes.
struct Waiting<J: Job> {
    job: J,
    answer: oneshot::Sender<Result<J::Output, RepositoryError>>,
    /// Cancelled once the caller no longer waits for the answer (it has it, or gave up).
    caller_gone: CancellationToken,
}

impl<J: Job> Waiting<J> {
    /// Sends the answer; a caller that stopped waiting (its request was cancelled) misses it,
    /// as it would have missed a lone statement's.
    fn answer(self, result: Answer<J>) {
        let _ = self.answer.send(result);
    }
}

/// The requests of one kind waiting to be run, and the workers at work on them (see the
/// [module documentation](self)).
pub(super) struct BatchQueue<J: Job> {
    connections: Connections,
    /// Most workers at once, each on a connection of its own.
    max_workers: usize,
    /// Most requests one worker takes at once.
    max_batch: usize,
    state: Mutex<State<J>>,
}

impl<J: Job> std::fmt::Debug for BatchQueue<J> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = lock(&self.state);
        f.debug_struct("BatchQueue")
            .field("waiting", &state.waiting.len())
            .field("workers", &state.workers)
            .field("max_workers", &self.max_workers)
            .field("max_batch", &self.max_batch)
            .finish_non_exhaustive()
    }
}

struct State<J: Job> {
    /// In arrival order.
    waiting: Vec<Waiting<J>>,
    /// Workers started and not yet finished. One leaves only once it has found nothing
    /// waiting, under the same lock as a new request is queued: no request is left without one.
    workers: usize,
}

impl<J: Job> BatchQueue<J> {
    /// A queue whose requests run on `connections`, by at most `max_workers` workers (at least
    /// one) taking at most `max_batch` requests each (at least one).
    pub(super) fn new(connections: Connections, max_workers: usize, max_batch: usize) -> Self {
        Self {
            connections,
            max_workers: max_workers.max(1),
            max_batch: max_batch.max(1),
            state: Mutex::new(State {
                waiting: Vec::new(),
                workers: 0,
            }),
        }
    }

    /// Runs `job`, with whatever else is waiting when a worker takes it.
    pub(super) async fn run(self: &Arc<Self>, job: J) -> Answer<J> {
        let (answer, answered) = oneshot::channel();
        let caller_gone = CancellationToken::new();
        let _gone_when_returned_or_dropped = caller_gone.clone().drop_guard();
        let start_worker = {
            let mut state = lock(&self.state);
            state.waiting.push(Waiting {
                job,
                answer,
                caller_gone,
            });
            let start = state.workers < self.max_workers;
            if start {
                state.workers += 1;
            }
            start
        };
        if start_worker {
            Worker::start(Arc::clone(self));
        }
        answered.await.unwrap_or_else(|_| {
            Err(RepositoryError::Internal(
                "the statement was abandoned".into(),
            ))
        })
    }

    /// Whether nothing waits, and then the calling worker has left: once it has run a batch, a
    /// worker leaves before it takes a connection it would not use.
    fn leave_if_idle(&self) -> bool {
        let mut state = lock(&self.state);
        let idle = state.waiting.is_empty();
        if idle {
            state.workers -= 1;
        }
        idle
    }

    /// Up to `max_batch` of the requests waiting, the earliest first, but for those whose
    /// callers are gone; `None` when nothing waits, and then the calling worker has left.
    fn take_or_leave(&self) -> Option<Vec<Waiting<J>>> {
        let mut state = lock(&self.state);
        state
            .waiting
            .retain(|waiting| !waiting.caller_gone.is_cancelled());
        if state.waiting.is_empty() {
            state.workers -= 1;
            return None;
        }
        let count = state.waiting.len().min(self.max_batch);
        Some(state.waiting.drain(..count).collect())
    }
}

/// One worker task: takes what waits and runs it, until nothing waits.
struct Worker<J: Job> {
    queue: Arc<BatchQueue<J>>,
    /// Whether it left the queue (counted out) the normal way.
    left: bool,
}

impl<J: Job> Worker<J> {
    fn start(queue: Arc<BatchQueue<J>>) {
        let mut worker = Self { queue, left: false };
        // On a task of its own, so that a caller giving up (a cancelled request) does not
        // abandon the other requests of its batch; not in the span of the request that
        // started it, since it runs others' too.
        tokio::spawn(async move { worker.run().await });
    }

    /// Started because a request waits, it leaves once none does.
    async fn run(&mut self) {
        loop {
            // The connection first, so that what arrives while it is found joins the batch.
            let connection = self.queue.connections.acquire().await;
            let Some(batch) = self.queue.take_or_leave() else {
                self.left = true;
                if let Ok(connection) = connection {
                    connection.finish(&Ok::<(), ()>(()));
                }
                return;
            };
            match connection {
                Ok(connection) => run_while_awaited(connection, batch).await,
                Err(error) => {
                    let error = SharedError::new(error);
                    for waiting in batch {
                        waiting.answer(Err(error.repository_error()));
                    }
                }
            }
            if self.queue.leave_if_idle() {
                self.left = true;
                return;
            }
        }
    }
}

impl<J: Job> Drop for Worker<J> {
    /// A worker dropped before it left (it panicked, or the runtime is shutting down) is
    /// counted out: the requests it held got an error (their answers were dropped), and the
    /// next request starts a worker that takes whatever still waits.
    fn drop(&mut self) {
        if !self.left {
            lock(&self.queue.state).workers -= 1;
        }
    }
}

/// Runs `batch` ([`run_batch`]) unless every one of its callers gives up first: then its
/// statement is dropped half-way, as a lone statement is with its caller.
async fn run_while_awaited<J: Job>(connection: Lease, batch: Vec<Waiting<J>>) {
    let callers: Vec<CancellationToken> = batch
        .iter()
        .map(|waiting| waiting.caller_gone.clone())
        .collect();
    let all_gone = async {
        for caller in &callers {
            caller.cancelled().await;
        }
    };
    tokio::select! {
        biased;
        () = run_batch(connection, batch) => {}
        () = all_gone => {
            debug!(requests = callers.len(), "every caller gave up: the statement is abandoned");
        }
    }
}

/// Runs `batch` on `connection`, answering each request: one alone; several together, then
/// alone those the statement left (or all of them, should it fail). The connection goes back
/// checked if any statement failed.
async fn run_batch<J: Job>(mut connection: Lease, batch: Vec<Waiting<J>>) {
    let answers = if batch.len() == 1 {
        Ok(vec![None])
    } else {
        let jobs: Vec<&J> = batch.iter().map(|waiting| &waiting.job).collect();
        J::together(&mut connection, &jobs).await
    };
    let mut clean = answers.is_ok();
    let answers = answers.unwrap_or_else(|error| {
        debug!(requests = batch.len(), %error, "running requests together failed; each runs alone");
        Vec::new()
    });
    // Those answered first; a request the statement gave no answer runs alone after it.
    let mut answers = answers.into_iter();
    let mut alone = Vec::new();
    for waiting in batch {
        match answers.next().flatten() {
            Some(answer) => waiting.answer(answer),
            None => alone.push(waiting),
        }
    }
    for waiting in alone {
        let answer = waiting.job.alone(&mut connection).await;
        clean &= answer.is_ok();
        waiting.answer(answer);
    }
    connection.finish(&if clean { Ok(()) } else { Err(()) });
}
