//! The `portico` binary: parses the command line and turns errors into exit codes.

fn main() {}
