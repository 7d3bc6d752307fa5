//! The adapter contract suite (feature `testkit`).
//!
//! Every [`EventRepository`](crate::ports::EventRepository), every queue and every
//! [`DeliveryLog`](crate::ports::DeliveryLog) implementation must behave the same; these public
//! async functions say how. An adapter's tests run the whole suite
//! with one macro call, which generates one test per case:
//!
//! ```text
//! calendar_core::repository_contract_tests! {
//!     #[tokio::test]
//!     fn() => MemoryEventRepository::new()
//! }
//! calendar_core::queue_contract_tests! {
//!     #[tokio::test]
//!     fn() => MemoryQueueFixture::new()
//! }
//! ```
//!
//! The attribute and the arguments are the adapter's own (for example
//! `#[sqlx::test] fn(pool: PgPool) => PostgresEventRepository::new(pool)`), and the expression
//! after `=>` may `.await`. Each case panics, naming what broke, when the adapter misbehaves.

// Test code: a failed expectation panics, naming what broke.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

pub mod delivery_log;
pub mod fixtures;
pub mod queue;
pub mod repository;

pub use queue::QueueFixture;

/// Generates one test per case of [`repository`] for the repository the expression builds.
#[macro_export]
macro_rules! repository_contract_tests {
    (#[$attr:meta] fn $params:tt => $make:expr) => {
        $crate::__contract_cases! {
            #[$attr] $params $make; repository:
            insert_then_get_returns_the_event,
            insert_rejects_a_taken_id,
            users_are_isolated,
            users_are_isolated_under_any_operations,
            overlapping_blocking_events_are_rejected,
            concurrent_inserts_of_one_slot_have_one_winner,
            update_replaces_details_and_bumps_version,
            update_checks_version_and_overlap,
            delete_removes_the_event,
            list_returns_overlapping_events_in_order,
            list_pages_without_gaps_or_duplicates_under_inserts,
            claim_due_leases_each_reminder,
            claim_due_respects_limit_and_order,
            claim_due_looks_ahead,
            current_reminders_are_those_still_armed,
            released_and_skipped_reminders,
            update_rearms_and_delete_cancels_reminders,
            concurrent_claimers_never_share_a_reminder,
            cleanup_deletes_events_ended_before_the_cutoff_in_batches,
            cleanup_is_claimed_by_one_holder_at_a_time,
            check_answers,
        }
    };
}

/// Generates one test per case of [`delivery_log`] for the log the expression builds.
#[macro_export]
macro_rules! delivery_log_contract_tests {
    (#[$attr:meta] fn $params:tt => $make:expr) => {
        $crate::__contract_cases! {
            #[$attr] $params $make; delivery_log:
            recorded_keys_are_delivered,
            forgetting_drops_only_older_keys,
            batches_answer_as_single_keys_do,
        }
    };
}

/// Generates one test per case of [`queue`] for the [`QueueFixture`] the expression builds.
#[macro_export]
macro_rules! queue_contract_tests {
    (#[$attr:meta] fn $params:tt => $make:expr) => {
        $crate::__contract_cases! {
            #[$attr] $params $make; queue:
            published_notifications_are_received_and_acked,
            retried_message_is_redelivered_with_the_next_attempt,
            dead_lettered_message_is_not_redelivered,
            undecodable_message_arrives_as_a_decode_error,
            settling_twice_is_refused,
            acknowledging_together_settles_each,
            receive_waits_for_a_message,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __contract_cases {
    (#[$attr:meta] $params:tt $make:expr; $suite:ident: $($case:ident),+ $(,)?) => {
        $(
            #[$attr]
            async fn $case $params {
                let subject = $make;
                $crate::testkit::$suite::$case(&subject).await;
            }
        )+
    };
}
