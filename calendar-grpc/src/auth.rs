//! Who is calling: the `x-user-id` request metadata, checked by [`UserIdInterceptor`] on the
//! calendar service only (health and reflection need no caller).
//!
//! The service trusts the metadata: it is meant to sit behind a gateway that authenticates
//! users and sets the header (stripping any the client sent).

use calendar_core::UserId;
use tonic::metadata::MetadataMap;
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// The metadata key naming the caller.
pub const USER_ID_METADATA: &str = "x-user-id";

/// Rejects calls without a valid caller with UNAUTHENTICATED; for the others, puts the caller's
/// [`UserId`] into the request's extensions (read it with [`caller`]) and records it as the
/// `user` field of the current span.
#[derive(Debug, Clone, Copy, Default)]
pub struct UserIdInterceptor;

impl Interceptor for UserIdInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let user = caller_from_metadata(request.metadata())?;
        tracing::Span::current().record("user", user.as_str());
        request.extensions_mut().insert(user);
        Ok(request)
    }
}

/// The caller named by the metadata: exactly one `x-user-id` value, visible ASCII, a valid
/// [`UserId`]; UNAUTHENTICATED otherwise.
pub fn caller_from_metadata(metadata: &MetadataMap) -> Result<UserId, Status> {
    let mut values = metadata.get_all(USER_ID_METADATA).iter();
    let value = values.next().ok_or_else(|| {
        Status::unauthenticated(format!(
            "missing {USER_ID_METADATA} metadata: name the calling user"
        ))
    })?;
    if values.next().is_some() {
        return Err(Status::unauthenticated(format!(
            "{USER_ID_METADATA} metadata given more than once"
        )));
    }
    let text = value
        .to_str()
        .map_err(|_| Status::unauthenticated(format!("{USER_ID_METADATA} is not visible ASCII")))?;
    UserId::new(text).map_err(|error| {
        Status::unauthenticated(format!(
            "{USER_ID_METADATA} is not a valid user id: {error}"
        ))
    })
}

/// The caller [`UserIdInterceptor`] found for `request`; UNAUTHENTICATED if the interceptor
/// did not run.
pub fn caller<T>(request: &Request<T>) -> Result<UserId, Status> {
    request
        .extensions()
        .get::<UserId>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("the caller was not checked"))
}

#[cfg(test)]
mod tests {
    use tonic::Code;
    use tonic::metadata::MetadataValue;

    use super::*;

    fn intercept(values: &[&[u8]]) -> Result<UserId, Status> {
        let mut request = Request::new(());
        for value in values {
            let value = MetadataValue::try_from(*value).unwrap();
            request.metadata_mut().append(USER_ID_METADATA, value);
        }
        let request = UserIdInterceptor.call(request)?;
        caller(&request)
    }

    #[test]
    fn a_valid_user_passes_and_is_recorded() {
        assert_eq!(
            intercept(&[b"ann@example.com"]).unwrap().as_str(),
            "ann@example.com"
        );
    }

    #[test]
    fn missing_repeated_or_malformed_users_are_unauthenticated() {
        let cases: [(&[&[u8]], &str); 5] = [
            (&[], "missing x-user-id"),
            (&[b"ann", b"bob"], "more than once"),
            (&[b"ann\xc3\xa9"], "not visible ASCII"),
            (&[b"ann smith"], "not a valid user id"),
            (&[b""], "not a valid user id"),
        ];
        for (values, message) in cases {
            let status = intercept(values).unwrap_err();
            assert_eq!(status.code(), Code::Unauthenticated, "{values:?}");
            assert!(status.message().contains(message), "{}", status.message());
        }
    }

    #[test]
    fn a_request_the_interceptor_did_not_see_has_no_caller() {
        let status = caller(&Request::new(())).unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
    }
}
