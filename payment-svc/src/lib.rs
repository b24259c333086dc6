//! payment-svc: the payment institution. It serves `BindingService` to
//! merchants over mutual TLS, keeps the card vault, the bindings and their
//! tokens, and charges cards through the acquirer; and it serves shoppers'
//! browsers the binding page (`web`).
pub mod admin;
pub mod config;
pub mod dev;
pub mod domain;
pub mod grpc;
pub mod startup;
pub mod store;
pub mod web;
