//! Upstream pools: which server gets a request (`balance`, `health`) and the
//! kept-alive connections to each (`pool`); learned sessions (`sticky`),
//! optionally shared with other nodes through Redis (`sticky_store`).

pub mod balance;
pub mod health;
pub mod pool;
pub mod sticky;
pub mod sticky_store;

pub use pool::Pool;
