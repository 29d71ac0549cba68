//! The `streamfleet` command line.
fn main() {}
