//! What the end-to-end tests and the benchmark share to run the calendar's binaries as
//! processes, on the machine's PostgreSQL and RabbitMQ.
//!
//! - [`process`]: one binary as a child process, its stderr captured, killed on drop.
//! - [`http`]: the workers' and the server's HTTP endpoint (metrics, health).
//! - [`services`]: databases of one's own on the PostgreSQL server, the broker's reachability,
//!   the default URLs.

pub mod http;
pub mod process;
pub mod services;
