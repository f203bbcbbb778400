//! `portico check`: validate a configuration like `nginx -t`, printing `ok` or every error.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::config;

/// Arguments of `portico check`.
#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// The configuration file to check.
    #[arg(short, long, default_value = "/etc/portico/portico.toml")]
    pub config: PathBuf,
}

/// Validates the file (parse, types, references, certificates and keys, log
/// paths writable) and writes `ok` or each error, one a line. Warnings come
/// first as `warning: ...` lines. Returns whether the configuration is usable.
pub fn run(args: &CheckArgs, out: &mut dyn Write) -> std::io::Result<bool> {
    let snapshot = match config::load(&args.config) {
        Ok(snapshot) => snapshot,
        Err(errors) => {
            for error in &errors.0 {
                writeln!(out, "{error}")?;
            }
            return Ok(false);
        }
    };
    let mut logs: Vec<&Path> = Vec::new();
    logs.extend(snapshot.runtime.error_log.as_deref());
    for listener in &snapshot.listeners {
        for server in &listener.servers {
            logs.extend(server.access_log.as_deref());
            logs.extend(server.error_log.as_deref());
        }
    }
    // A server on several listeners, or two servers sharing a log, is checked once.
    logs.sort();
    logs.dedup();
    let mut ok = true;
    for log in logs {
        if let Err(e) = open_for_append(log) {
            writeln!(
                out,
                "{}: cannot open log {} for appending: {e}",
                args.config.display(),
                log.display()
            )?;
            ok = false;
        }
    }
    if ok {
        for warning in &snapshot.warnings {
            writeln!(out, "warning: {warning}")?;
        }
        writeln!(out, "ok")?;
    }
    Ok(ok)
}

/// Opens `path` as `run` will: missing parent directories created, the file
/// created if absent, nothing truncated.
fn open_for_append(path: &Path) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map(drop)
}
