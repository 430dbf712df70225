//! kiln builder API.
