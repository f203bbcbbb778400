//! Upstream pools: which server gets a request (`balance`, `health`) and the
//! kept-alive connections to each (`pool`).

pub mod balance;
pub mod health;
pub mod pool;
pub mod sticky;

pub use pool::Pool;
