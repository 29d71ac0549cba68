//! Process runtime shared by every role: shutdown and drain, connection limits, binding and
//! accept loops, the stdout readiness contract, the metrics registry, and the randomness and
//! clock readings the sans-IO protocol code is fed with.

pub mod entropy;
pub mod limit;
pub mod listener;
pub mod logline;
pub mod metrics;
pub mod readiness;
pub mod shutdown;

pub use limit::{ConnLimit, ConnPermit};
pub use listener::BindError;
pub use shutdown::Shutdown;
