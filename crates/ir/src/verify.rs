//! Whole-graph verifier: re-infers every node and collects every error.
