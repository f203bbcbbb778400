//! `portico demo`.
