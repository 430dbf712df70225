//! kiln reference interpreter.
