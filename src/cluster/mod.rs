//! Cluster state: the records every node shares (model), where they live (store), and the
//! loops that keep them fresh (heartbeat).

pub mod heartbeat;
pub mod model;
pub mod store;
pub mod sysstat;
