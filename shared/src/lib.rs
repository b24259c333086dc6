//! What both paybind services need and nothing service-specific: layered
//! configuration, telemetry, TLS (and the development PKI), money, ids, and the
//! gRPC plumbing for errors, health and reflection.
pub mod config;
pub mod grpc;
pub mod ids;
pub mod money;
pub mod telemetry;
pub mod tls;
