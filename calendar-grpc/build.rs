//! Generates the gRPC code from `proto/` with protox (a protobuf compiler in Rust, so no
//! `protoc` is needed) and tonic-prost-build, and writes the encoded descriptor set that server
//! reflection serves.

use std::env;
use std::fs;
use std::path::PathBuf;

use prost::Message as _;

/// The file the descriptor set is written to, in `OUT_DIR` (read by `src/proto.rs`).
const DESCRIPTOR_FILE: &str = "calendar_descriptor.bin";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest_dir.join("../proto");
    let files = ["calendar/v1/calendar.proto", "google/type/date.proto"];
    for file in files {
        println!("cargo:rerun-if-changed={}", proto_root.join(file).display());
    }
    println!("cargo:rerun-if-changed=build.rs");

    // Parses the files and their imports (the well-known types are built into protox), with
    // source info so that reflection clients see the documentation comments.
    let descriptors = protox::compile(files, [&proto_root])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out_dir.join(DESCRIPTOR_FILE), descriptors.encode_to_vec())?;

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}
