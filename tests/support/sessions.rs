//! JSESSIONID sessions against test backends, for the sticky tests (local
//! table and shared store alike).

use http::StatusCode;

use super::{Client, TestBackend};

/// `n` backends named `node0`, `node1`, ...
pub async fn nodes(n: usize) -> Vec<TestBackend> {
    let mut backends = Vec::new();
    for i in 0..n {
        backends.push(TestBackend::spawn(&format!("node{i}")).await);
    }
    backends
}

/// A session as `/login` created it.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// The JSESSIONID value.
    pub id: String,
    /// The node that created it.
    pub node: String,
}

impl Session {
    pub fn cookie(&self) -> String {
        format!("JSESSIONID={}", self.id)
    }
}

/// `GET /login` for `host`: the node that answered and the JSESSIONID it set.
pub async fn login(client: &mut Client, host: &str) -> Session {
    let reply = client.get(host, "/login").await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "/login: {}", reply.text());
    let node = reply.text();
    assert_eq!(reply.header("x-backend"), Some(node.as_str()));
    let set_cookie = reply.header("set-cookie").expect("/login passes on the Set-Cookie");
    let id = set_cookie
        .strip_prefix("JSESSIONID=")
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("unexpected Set-Cookie {set_cookie:?}"));
    Session { id: id.to_owned(), node }
}
