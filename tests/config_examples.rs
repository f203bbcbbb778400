//! The annotated examples in `config/` parse, so that they can never rot.

use std::error::Error;
use std::path::{Path, PathBuf};

use portico::config::runtime::Action;

fn example(name: &str) -> Result<(PathBuf, String), Box<dyn Error>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config").join(name);
    let text = std::fs::read_to_string(&path)?;
    Ok((path, text))
}

/// Every `config/*.toml`, so that a new example is checked without being listed.
fn all_examples() -> Result<Vec<String>, Box<dyn Error>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.ends_with(".toml") {
            names.push(name);
        }
    }
    names.sort();
    assert!(names.len() >= 7, "expected the quickstart and six WSO2 deployments, found {names:?}");
    Ok(names)
}

#[test]
fn examples_use_only_known_keys_and_types() -> Result<(), Box<dyn Error>> {
    for name in all_examples()? {
        let (_, text) = example(&name)?;
        toml::from_str::<portico::config::file::File>(&text).map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}

/// Everything in the quickstart but its certificate (which needs tls.rs).
#[test]
fn quickstart_without_its_certificate_is_valid() -> Result<(), Box<dyn Error>> {
    let (path, text) = example("quickstart.toml")?;
    let line = "tls = { self_signed = true }\n";
    assert!(text.contains(line));
    let snapshot = portico::config::parse_str(&text.replace(line, ""), &path)?;
    assert_eq!(snapshot.upstreams.len(), 1);
    let demo = &snapshot.upstreams[0];
    assert_eq!(demo.name, "demo");
    assert_eq!(demo.peers.len(), 2);
    assert_eq!(demo.sticky.as_ref().map(|s| s.learn.as_str()), Some("JSESSIONID"));
    let addrs: Vec<String> = snapshot.listeners.iter().map(|l| l.addr.to_string()).collect();
    assert_eq!(addrs, ["127.0.0.1:8080", "127.0.0.1:8443"]);
    assert!(matches!(snapshot.listeners[0].servers[0].locations[0].action, Action::Redirect { .. }));
    assert!(matches!(snapshot.listeners[1].servers[0].locations[0].action, Action::Proxy { upstream: 0 }));
    Ok(())
}

#[test]
fn quickstart_is_valid() -> Result<(), Box<dyn Error>> {
    let (path, text) = example("quickstart.toml")?;
    let snapshot = portico::config::parse_str(&text, &path)?;
    assert!(snapshot.listeners[1].tls);
    assert!(snapshot.listeners[1].servers[0].certificate.is_some());
    assert_eq!(snapshot.warnings, ["server \"localhost\" uses a self-signed certificate: for trials only"]);
    Ok(())
}

/// The WSO2 examples name certificate files under /etc/portico that a test
/// machine does not have: those must be their only errors.
#[test]
fn wso2_examples_only_lack_their_certificates() -> Result<(), Box<dyn Error>> {
    for name in all_examples()?.iter().filter(|n| n.starts_with("wso2-")) {
        let (path, text) = example(name)?;
        let errors = match portico::config::parse_str(&text, &path) {
            Ok(_) => continue,
            Err(errors) => errors.0,
        };
        assert!(!errors.is_empty());
        for error in &errors {
            let missing = error.message.ends_with(" does not exist")
                && (error.message.starts_with("cert file /etc/portico/ssl/")
                    || error.message.starts_with("key file /etc/portico/ssl/"));
            assert!(missing, "{name}: {error}");
        }
    }
    Ok(())
}
