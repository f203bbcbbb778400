//! `portico cert`: writes a self-signed certificate and key, replacing the openssl steps.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::tls::{self, KeyType, TlsError};

/// `portico cert --name HOST... --out DIR [--rsa BITS] [--force]`.
#[derive(clap::Args, Debug)]
pub struct CertArgs {
    /// A name the certificate is for (DNS name, `*.example.com` or IP address);
    /// the first one names the files.
    #[arg(long = "name", value_name = "HOST", required = true, num_args = 1..)]
    pub names: Vec<String>,
    /// The directory to write `<name>.crt` and `<name>.key` into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Make an RSA key of this many bits instead of ECDSA P-256.
    #[arg(long, value_name = "BITS", value_parser = parse_rsa_bits)]
    pub rsa: Option<u32>,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
}

/// Why `portico cert` wrote nothing (or not everything).
#[derive(Debug, Error)]
pub enum CertError {
    #[error("no --name given")]
    NoName,
    #[error("{} already exists (pass --force to overwrite)", path.display())]
    Exists { path: PathBuf },
    #[error("cannot create {}: {source}", path.display())]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot print the result: {0}")]
    Output(std::io::Error),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

fn parse_rsa_bits(value: &str) -> Result<u32, String> {
    value
        .parse::<u32>()
        .ok()
        .filter(|bits| tls::RSA_BITS.contains(bits))
        .ok_or_else(|| format!("{value:?} is not an RSA key size: use 2048, 3072 or 4096"))
}

/// The file stem for a certificate name: `*.example.com` -> `_wildcard.example.com`,
/// and anything that is not a plain file-name character becomes `_`, so a name
/// can never point outside `--out`.
fn file_stem(name: &str) -> String {
    let name = match name.strip_prefix("*.") {
        Some(rest) => format!("_wildcard.{rest}"),
        None => name.to_owned(),
    };
    let stem: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' }).collect();
    // No hidden files, and never "." or "..".
    match stem.strip_prefix('.') {
        Some(rest) => format!("_{rest}"),
        None => stem,
    }
}

/// Writes `<out>/<first name>.crt` and `.key` (mode 0600) and prints their
/// paths and the `tls = { .. }` line to paste into `portico.toml`.
pub fn run(args: &CertArgs, out: &mut dyn Write) -> Result<(), CertError> {
    let first = args.names.first().ok_or(CertError::NoName)?;
    std::fs::create_dir_all(&args.out).map_err(|source| CertError::CreateDir { path: args.out.clone(), source })?;
    // Absolute paths, so the printed TOML line works from any directory.
    let dir =
        std::fs::canonicalize(&args.out).map_err(|source| CertError::CreateDir { path: args.out.clone(), source })?;
    let stem = file_stem(first);
    let cert_path = dir.join(format!("{stem}.crt"));
    let key_path = dir.join(format!("{stem}.key"));

    // Check both before writing either, so a refusal leaves no half-written pair.
    if !args.force {
        for path in [&cert_path, &key_path] {
            if path.symlink_metadata().is_ok() {
                return Err(CertError::Exists { path: path.clone() });
            }
        }
    }

    let key_type = match args.rsa {
        Some(bits) => KeyType::Rsa(bits),
        None => KeyType::EcdsaP256,
    };
    let (cert_pem, key_pem) = tls::generate_pem(&args.names, key_type)?;

    let mut key_file = create(&key_path, 0o600, args.force)?;
    // `mode` only applies to a file being created; an overwritten one keeps its
    // old permissions, so tighten them before the key is in it.
    key_file
        .set_permissions(std::fs::Permissions::from_mode(0o600))
        .and_then(|()| key_file.write_all(key_pem.as_bytes()))
        .and_then(|()| key_file.sync_all())
        .map_err(|source| CertError::Write { path: key_path.clone(), source })?;

    let mut cert_file = create(&cert_path, 0o644, args.force)?;
    cert_file
        .write_all(cert_pem.as_bytes())
        .and_then(|()| cert_file.sync_all())
        .map_err(|source| CertError::Write { path: cert_path.clone(), source })?;

    writeln!(out, "wrote {}", cert_path.display())
        .and_then(|()| writeln!(out, "wrote {} (mode 0600)", key_path.display()))
        .and_then(|()| writeln!(out, "add to the [[server]] block in portico.toml:"))
        .and_then(|()| {
            writeln!(out, "tls = {{ cert = {}, key = {} }}", toml_string(&cert_path), toml_string(&key_path))
        })
        .map_err(CertError::Output)
}

/// Opens `path` for writing with `mode` from the moment it exists; without
/// `force` an existing file (or one that appeared since the check) is refused.
fn create(path: &Path, mode: u32, force: bool) -> Result<File, CertError> {
    let mut options = OpenOptions::new();
    options.write(true).mode(mode);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    options.open(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::AlreadyExists => CertError::Exists { path: path.to_path_buf() },
        _ => CertError::Write { path: path.to_path_buf(), source },
    })
}

/// A path as a TOML basic string.
fn toml_string(path: &Path) -> String {
    let mut quoted = String::from("\"");
    for c in path.display().to_string().chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if c.is_control() => quoted.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    use clap::Parser;

    use crate::test_support::TempDir;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        cert: CertArgs,
    }

    fn args(out: &Path, names: &[&str]) -> CertArgs {
        CertArgs {
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            out: out.to_path_buf(),
            rsa: None,
            force: false,
        }
    }

    /// The DNS and IP names in a certificate's subjectAltName, via webpki.
    fn names_in(cert_der: &rustls_pki_types::CertificateDer<'_>) -> Vec<String> {
        use rustls_pki_types::ServerName;
        // webpki checks a name against the certificate: ask it for each candidate.
        let cert = rustls::server::ParsedCertificate::try_from(cert_der).unwrap();
        ["example.com", "www.example.com", "a.example.org", "127.0.0.1", "other.com"]
            .into_iter()
            .filter(|name| {
                let server_name = ServerName::try_from(*name).unwrap();
                rustls::client::verify_server_name(&cert, &server_name).is_ok()
            })
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn cert_writes_pair_that_loads_back() {
        let tmp = TempDir::new("pair");
        let out_dir = tmp.0.join("nested/ssl");
        let mut printed = Vec::new();
        run(&args(&out_dir, &["example.com", "www.example.com", "127.0.0.1"]), &mut printed).unwrap();

        let dir = std::fs::canonicalize(&out_dir).unwrap();
        let cert = dir.join("example.com.crt");
        let key = dir.join("example.com.key");
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "key mode {mode:o}");

        let printed = String::from_utf8(printed).unwrap();
        assert!(printed.contains(&cert.display().to_string()), "{printed}");
        assert!(
            printed.contains(&format!("tls = {{ cert = \"{}\", key = \"{}\" }}", cert.display(), key.display())),
            "{printed}"
        );

        let certified = tls::load_certified_key(&cert, &key).unwrap();
        let leaf = certified.end_entity_cert().unwrap();
        assert_eq!(names_in(leaf), ["example.com", "www.example.com", "127.0.0.1"]);
    }

    #[test]
    fn cert_wildcard_first_name_names_files() {
        let tmp = TempDir::new("wild");
        run(&args(&tmp.0, &["*.example.org"]), &mut Vec::new()).unwrap();
        let cert = tmp.0.join("_wildcard.example.org.crt");
        let key = tmp.0.join("_wildcard.example.org.key");
        let certified = tls::load_certified_key(&cert, &key).unwrap();
        assert_eq!(names_in(certified.end_entity_cert().unwrap()), ["a.example.org"]);
    }

    #[test]
    fn cert_refuses_to_overwrite_without_force() {
        let tmp = TempDir::new("force");
        run(&args(&tmp.0, &["example.com"]), &mut Vec::new()).unwrap();
        let key = tmp.0.join("example.com.key");
        let before = std::fs::read(&key).unwrap();

        let err = run(&args(&tmp.0, &["example.com"]), &mut Vec::new()).unwrap_err();
        assert!(matches!(err, CertError::Exists { .. }), "{err}");
        assert!(err.to_string().contains("--force"), "{err}");
        assert_eq!(std::fs::read(&key).unwrap(), before, "refusal must not touch the key");

        // Only the key exists: still refused, and no certificate is written.
        std::fs::remove_file(tmp.0.join("example.com.crt")).unwrap();
        let err = run(&args(&tmp.0, &["example.com"]), &mut Vec::new()).unwrap_err();
        assert!(matches!(err, CertError::Exists { .. }), "{err}");
        assert!(!tmp.0.join("example.com.crt").exists());

        // --force overwrites, and tightens a key file that had looser permissions.
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut forced = args(&tmp.0, &["example.com"]);
        forced.force = true;
        run(&forced, &mut Vec::new()).unwrap();
        assert_ne!(std::fs::read(&key).unwrap(), before);
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        tls::load_certified_key(&tmp.0.join("example.com.crt"), &key).unwrap();
    }

    #[test]
    fn cert_args_parse() {
        let cli =
            Cli::try_parse_from(["cert", "--name", "a.com", "b.com", "--out", "/tmp/x", "--rsa", "3072"]).unwrap();
        assert_eq!(cli.cert.names, ["a.com", "b.com"]);
        assert_eq!(cli.cert.rsa, Some(3072));
        assert!(!cli.cert.force);
        let cli = Cli::try_parse_from(["cert", "--name", "a.com", "--name", "b.com", "--out", "x"]).unwrap();
        assert_eq!(cli.cert.names, ["a.com", "b.com"], "--name may repeat");

        assert!(Cli::try_parse_from(["cert", "--name", "a.com", "--out", "/tmp/x", "--rsa", "1024"]).is_err());
        assert!(Cli::try_parse_from(["cert", "--out", "/tmp/x"]).is_err(), "--name is required");
        assert!(Cli::try_parse_from(["cert", "--name", "a.com"]).is_err(), "--out is required");
    }

    #[test]
    fn cert_file_stem_stays_inside_out() {
        assert_eq!(file_stem("example.com"), "example.com");
        assert_eq!(file_stem("*.example.com"), "_wildcard.example.com");
        assert_eq!(file_stem("../etc/passwd"), "_._etc_passwd");
        assert_eq!(file_stem(".."), "_.");
        assert_eq!(file_stem("::1"), "__1");
    }
}
