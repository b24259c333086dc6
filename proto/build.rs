//! Compiles the contract with protox (pure Rust, no system `protoc`), generates
//! the tonic/prost code, and writes the descriptor set that the servers'
//! reflection serves.
use std::{env, fs, path::PathBuf};

use prost::Message;

/// Files merchants compile against; the generated Rust comes from these.
const CONTRACT: &[&str] = &[
    "paybind/payment/v1/resources.proto",
    "paybind/payment/v1/binding_service.proto",
    "paybind/payment/v1/event_service.proto",
    "paybind/merchant/v1/merchant_service.proto",
    "paybind/merchant/v1/notification_service.proto",
];
/// Only described through reflection, so grpcurl can print error details.
const REFLECTION_ONLY: &[&str] = &["google/rpc/error_details.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    for file in CONTRACT.iter().chain(REFLECTION_ONLY) {
        println!("cargo:rerun-if-changed={file}");
    }

    let all: Vec<&str> = CONTRACT.iter().chain(REFLECTION_ONLY).copied().collect();
    let described = protox::compile(&all, ["."])?;
    fs::write(
        out_dir.join("paybind_descriptor.bin"),
        described.encode_to_vec(),
    )?;

    let contract = protox::compile(CONTRACT, ["."])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(contract)?;
    Ok(())
}
