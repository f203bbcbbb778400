//! `portico cert`.
