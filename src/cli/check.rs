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
            writeln!(out, "{}: cannot open log {} for appending: {e}", args.config.display(), log.display())?;
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
    OpenOptions::new().create(true).append(true).open(path).map(drop)
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::*;

    fn scratch_dir(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("portico-check-{name}-{}", std::process::id()))
    }

    #[test]
    fn prints_ok_and_creates_the_logs() -> Result<(), Box<dyn Error>> {
        let dir = scratch_dir("ok");
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("portico.toml");
        std::fs::write(
            &config,
            "[upstream.a]\nservers = [\"127.0.0.1:1\"]\n[[server]]\nlisten = [\"127.0.0.1:0\"]\nproxy_pass = \"a\"\naccess_log = \"logs/access.log\"\n",
        )?;
        let mut out = Vec::new();
        let ok = run(&CheckArgs { config: config.clone() }, &mut out)?;
        let log_created = dir.join("logs/access.log").is_file();
        std::fs::remove_dir_all(&dir)?;
        assert_eq!(String::from_utf8(out)?, "ok\n");
        assert!(ok && log_created);
        Ok(())
    }

    #[test]
    fn prints_every_error() -> Result<(), Box<dyn Error>> {
        let dir = scratch_dir("bad");
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("portico.toml");
        std::fs::write(&config, "[[server]]\nlisten = [\"x\"]\nproxy_pass = \"a\"\n")?;
        let mut out = Vec::new();
        let ok = run(&CheckArgs { config: config.clone() }, &mut out)?;
        std::fs::remove_dir_all(&dir)?;
        let out = String::from_utf8(out)?;
        assert!(!ok);
        assert_eq!(out.lines().count(), 2, "{out}");
        assert!(out.starts_with(&format!("{}:2:11: listen \"x\"", config.display())), "{out}");
        Ok(())
    }

    #[test]
    fn an_unwritable_log_is_an_error() -> Result<(), Box<dyn Error>> {
        let dir = scratch_dir("unwritable");
        std::fs::create_dir_all(&dir)?;
        // A regular file where the log's directory should be: no one can create it.
        std::fs::write(dir.join("blocker"), "")?;
        let config = dir.join("portico.toml");
        std::fs::write(&config, "[runtime]\nerror_log = \"blocker/error.log\"\n")?;
        let mut out = Vec::new();
        let ok = run(&CheckArgs { config: config.clone() }, &mut out)?;
        std::fs::remove_dir_all(&dir)?;
        let out = String::from_utf8(out)?;
        assert!(!ok);
        let expected =
            format!("{}: cannot open log {} for appending:", config.display(), dir.join("blocker/error.log").display());
        assert!(out.starts_with(&expected), "{out}");
        Ok(())
    }

    #[test]
    fn a_missing_file_is_reported() -> Result<(), Box<dyn Error>> {
        let mut out = Vec::new();
        let config = scratch_dir("missing").join("portico.toml");
        assert!(!run(&CheckArgs { config }, &mut out)?);
        assert!(String::from_utf8(out)?.contains("cannot read the configuration file"));
        Ok(())
    }
}
