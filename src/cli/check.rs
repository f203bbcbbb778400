//! `portico check`.
