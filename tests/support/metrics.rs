//! `/metrics` of portico's admin listener, scraped and parsed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::StatusCode;

use super::{Client, Reply};

pub async fn admin_get(addr: SocketAddr, path: &str) -> Reply {
    let mut client = Client::http1(addr).await.unwrap();
    client.get("admin", path).await.unwrap()
}

/// One `/metrics` scrape, parsed.
pub struct Scrape {
    pub text: String,
    samples: Vec<(String, HashMap<String, String>, f64)>,
}

impl Scrape {
    pub fn parse(text: String) -> Scrape {
        let mut samples = Vec::new();
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value: {line}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}').expect("labels end with }"))),
                None => (series, HashMap::new()),
            };
            samples.push((name.to_owned(), labels, value));
        }
        Scrape { text, samples }
    }

    /// The one sample of `name` whose labels include `labels`.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut found = self
            .samples
            .iter()
            .filter(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)));
        let first = found.next()?;
        assert!(found.next().is_none(), "{name} {labels:?} matches several samples:\n{}", self.text);
        Some(first.2)
    }

    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in:\n{}", self.text))
    }
}

/// `a="x",b="y\"z"` (the inside of the braces), unescaping values.
fn parse_labels(text: &str) -> HashMap<String, String> {
    let mut labels = HashMap::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").expect("label=\"value\"");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().expect("closing quote") {
                (_, '\\') => match chars.next().expect("escaped char").1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        labels.insert(key.to_owned(), value);
        rest = after[end + 1..].strip_prefix(',').unwrap_or(&after[end + 1..]);
    }
    labels
}

pub async fn scrape(admin: SocketAddr) -> Scrape {
    let reply = admin_get(admin, "/metrics").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    Scrape::parse(reply.text())
}

/// Scrapes until `ready` holds (up to 5 s) and returns that scrape. A request
/// is counted when portico has polled the end of its body, which may be just
/// after the client has read the last byte; there is no signal to wait on.
pub async fn scrape_until(admin: SocketAddr, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let scrape = scrape(admin).await;
        if ready(&scrape) || Instant::now() > deadline {
            return scrape;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
