//! The code generated from `proto/` (messages, the server trait and the client), and the
//! encoded descriptor set that server reflection serves.

#![allow(
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    clippy::all,
    clippy::pedantic
)]

/// Package `calendar.v1`: the calendar service.
pub mod calendar {
    /// Version 1 of the calendar API.
    pub mod v1 {
        tonic::include_proto!("calendar.v1");
    }
}

/// Package `google.type`: shared types from the Google APIs (vendored `google/type/date.proto`).
pub mod google {
    /// Common types: [`r#type::Date`].
    pub mod r#type {
        tonic::include_proto!("google.r#type");
    }
}

/// The encoded `FileDescriptorSet` of every file in `proto/` and its imports, with
/// documentation comments, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/calendar_descriptor.bin"));
