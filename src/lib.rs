//! avesa-console: plans, runs and watches backfills of SaaS APIs into Parquet, per tenant.

pub mod cli;
pub mod cloud;
pub mod config;
pub mod domain;
pub mod engine;
pub mod logs;
pub mod process;
pub mod sandbox;
pub mod secret;
pub mod sink;
pub mod sources;
pub mod store;
pub mod transform;
pub mod tui;
pub mod workspace;
