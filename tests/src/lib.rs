//! Shared helpers for kiln end-to-end tests.

pub mod golden;
pub mod models;
