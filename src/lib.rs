//! portico: a reverse proxy and load balancer for clustered Java application servers.

pub mod cli;
pub mod config;
pub mod listener;
pub mod log;
pub mod proxy;
pub mod template;
pub mod tls;
pub mod upstream;
pub mod vhost;
