//! paybind's gRPC contract, generated from the `.proto` files beside this crate.

/// `paybind.payment.v1`: the payment institution's API for merchants.
pub mod payment {
    pub mod v1 {
        #![allow(clippy::all, clippy::pedantic, missing_docs)]
        tonic::include_proto!("paybind.payment.v1");
    }
}

/// `paybind.merchant.v1`: the merchant's own API (merchant-svc).
pub mod merchant {
    pub mod v1 {
        #![allow(clippy::all, clippy::pedantic, missing_docs)]
        tonic::include_proto!("paybind.merchant.v1");
    }
}

/// The encoded `FileDescriptorSet` of every paybind service and of the
/// `google.rpc` error details, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/paybind_descriptor.bin"));
