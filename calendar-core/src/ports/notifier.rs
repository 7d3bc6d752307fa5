use async_trait::async_trait;

use super::BoxError;
use crate::domain::Notification;

/// Why a notification was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The channel to the user is down for now: worth trying again later.
    #[error("notification channel unavailable: {0}")]
    Unavailable(#[source] BoxError),
    /// The channel refused this notification: trying again will not help.
    #[error("notification rejected: {0}")]
    Rejected(String),
}

/// Delivers a notification to its user (e-mail, push, a log line).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Delivers `notification`.
    ///
    /// MUST return `Ok` only once the notification has been handed to the user's channel;
    /// [`NotifyError::Unavailable`] for a passing failure, [`NotifyError::Rejected`] for one
    /// that will not pass.
    async fn notify(&self, notification: &Notification) -> Result<(), NotifyError>;
}
