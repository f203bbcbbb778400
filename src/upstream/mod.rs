//! Upstream pools: which server gets a request (`balance`; `health`, passive,
//! and `health_check`, active), the kept-alive connections to each (`pool`)
//! and the HTTP/1.1 spoken on them (`http1`); learned sessions (`sticky`),
//! optionally shared with other nodes through Redis (`sticky_store`).

pub mod balance;
pub mod health;
pub mod health_check;
pub mod http1;
pub mod pool;
pub mod sticky;
pub mod sticky_store;

pub use pool::Pool;
