//! Subcommands: one file each.

pub mod cert;
pub mod check;
pub mod demo;
pub mod import_nginx;
pub mod run;
