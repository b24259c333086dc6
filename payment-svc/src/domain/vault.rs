//! The vault (AES-256-GCM with key ids, keyed hashes) lives in `shared`:
//! merchant-svc seals its binding tokens with it too.
pub use paybind_shared::vault::*;
