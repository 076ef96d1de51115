//! Shared by the fuzz targets; `oracles.rs` is also what `tests/properties.rs` checks.
pub mod oracles;
