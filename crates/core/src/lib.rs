//! Switchyard's pure core: everything the gateway decides, with no I/O.
//!
//! The worker (the crate at the repository's root) moves bytes and calls into this crate; time
//! and randomness come in as arguments, so everything here is tested natively and
//! deterministically.

pub mod auth;
pub mod breaker;
pub mod canonical;
pub mod catalog;
pub mod chat;
pub mod config;
pub mod embeddings;
pub mod endpoint;
pub mod error;
pub mod health;
pub mod ingress;
pub mod keys;
pub mod lease;
pub mod ledger;
pub mod ledger_protocol;
pub mod media;
pub mod models;
pub mod providers;
pub mod ratelimit;
pub mod route;
pub mod settlement;
pub mod sse;

pub use config::Config;
pub use error::GatewayError;
