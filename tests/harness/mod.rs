//! What the end-to-end tests, the API suite and the benchmark share to run the calendar's
//! binaries as processes, on the machine's PostgreSQL and RabbitMQ.
//!
//! - [`process`]: one binary as a child process, its stderr captured, killed on drop.
//! - [`grpc`]: the gRPC server, `calendar-grpc`, as such a process on a database, and clients
//!   of it or of any server by URL.
//! - [`http`]: the workers' and the server's HTTP endpoint (metrics, health).
//! - [`services`]: databases of one's own on the PostgreSQL server, the broker's reachability,
//!   the default URLs.
//! - [`database`]: a database of one test's own, dropped afterwards.

pub mod database;
pub mod grpc;
pub mod http;
pub mod process;
pub mod services;
