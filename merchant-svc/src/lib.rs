//! merchant-svc: an e-commerce shop's side of paybind. It keeps its own users
//! and orders, stores each user's binding token, and at checkout either pays
//! with the token (no authentication) or sends BindAndPay to payment-svc.
pub mod config;
pub mod domain;
pub mod grpc;
pub mod payment_client;
pub mod startup;
pub mod store;
pub mod web;
