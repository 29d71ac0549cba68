//! Pieces the load generators in `src/bin/` share.

pub mod plan;
