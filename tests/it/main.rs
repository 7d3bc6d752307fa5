//! Tests across the calendar's crates and processes, in one test binary.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod api;
mod e2e;
mod mocks;

use calendar_grpc::auth::USER_ID_METADATA;
use tonic::Request;

/// A request from `user`.
pub(crate) fn as_user<T>(user: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert(USER_ID_METADATA, user.parse().expect("a user id"));
    request
}
