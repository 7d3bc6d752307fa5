//! Rebuilds the crate when a migration is added: `sqlx::migrate!` embeds the files of
//! `migrations/`, but on stable Rust cargo only notices edits to files it has already seen.

fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
