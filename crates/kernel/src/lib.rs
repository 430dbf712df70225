//! kiln kernel IR (being written).
