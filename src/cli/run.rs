//! `portico run`.
