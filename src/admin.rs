//! The admin endpoint on `[admin] listen`: `/metrics` (Prometheus text), `/healthz` and `/status` (HTML).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::listener::Shared;
use crate::log::Logs;
use crate::metrics::{self, Exposition, Kind, STATUS_CLASSES};
use crate::proxy::Site;
use crate::upstream::Pool;
use crate::upstream::health_check::Verdict;
use crate::upstream::sticky::StickyStats;
use crate::upstream::sticky_store::{State as StoreState, StoreStats};

/// A per-upstream-server figure read from its pool at scrape time.
type PeerValue = dyn Fn(&Pool, usize) -> u64;

/// Scrapers and people, not clients: a few connections at once are plenty,
/// and more are refused rather than let the endpoint grow without bound.
const MAX_CONNECTIONS: usize = 32;

/// An idle admin connection is closed after this long without a request.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A running admin endpoint.
pub struct AdminServer {
    /// As configured (`127.0.0.1:0` stays that, whatever port it got).
    pub addr: SocketAddr,
    /// Where it is bound.
    pub local: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// What the endpoint reads on each request.
struct State {
    shared: Arc<Shared>,
    logs: Logs,
}

impl AdminServer {
    /// Serves the admin endpoint on `listener` (bound for `addr`), reading the
    /// current site from `shared` on every request.
    pub fn spawn(addr: SocketAddr, listener: TcpListener, shared: Arc<Shared>, logs: Logs) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let state = Arc::new(State { shared, logs });
        let task = tokio::spawn(serve(listener, state, stopped));
        Ok(AdminServer { addr, local, stop, task })
    }

    /// Closes the listener and every admin connection, and waits until they are closed.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    /// As [`AdminServer::stop`] without waiting (a reload does not wait).
    pub fn close(self) {
        let _ = self.stop.send(true);
    }
}

async fn serve(listener: TcpListener, state: Arc<State>, mut stop: watch::Receiver<bool>) {
    // Dropping the set on return aborts the connections still open.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    // EMFILE and friends: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                if connections.len() >= MAX_CONNECTIONS {
                    continue;
                }
                let state = state.clone();
                connections.spawn(async move {
                    let service = service_fn(move |request| answer(state.clone(), request));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(IDLE_TIMEOUT)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = stop.changed() => return,
        }
    }
}

async fn answer(state: Arc<State>, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let page = match request.uri().path() {
        "/metrics" => Page::Metrics,
        "/healthz" => Page::Health,
        "/status" => Page::Status,
        _ => return Ok(text(StatusCode::NOT_FOUND, "not found\n")),
    };
    if request.method() != Method::GET {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET"));
        return Ok(response);
    }
    let shared = &state.shared;
    Ok(match page {
        Page::Health if shared.instance.is_draining() => text(StatusCode::SERVICE_UNAVAILABLE, "draining\n"),
        Page::Health => text(StatusCode::OK, "ok\n"),
        Page::Metrics => {
            let body = render_metrics(&shared.site.load(), &shared.instance, state.logs.dropped_lines());
            respond(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", body)
        }
        Page::Status => {
            respond(StatusCode::OK, "text/html; charset=utf-8", render_status(&shared.site.load(), &shared.instance))
        }
    })
}

enum Page {
    Metrics,
    Health,
    Status,
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    respond(status, "text/plain; charset=utf-8", body.to_owned())
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Every answer is live state: a cache in between would show stale numbers.
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// How an upstream server stands, as NGINX Plus's dashboard shows it.
fn peer_state(pool: &Pool, peer: usize) -> &'static str {
    let Some(config) = pool.upstream.peers.get(peer) else { return "down" };
    if config.down {
        "down"
    } else if let Some(verdict) = pool.checks().map(|checks| checks.verdict(peer)).filter(|v| *v != Verdict::Passing) {
        // Before passive health: the checks hold it out whatever requests do.
        if verdict == Verdict::Checking { "checking" } else { "unhealthy" }
    } else if !pool.is_usable(peer) {
        "failed"
    } else if config.drain {
        "draining"
    } else if config.backup {
        "backup"
    } else {
        "up"
    }
}

/// `upstream` and `peer` labels of one upstream server.
type PeerLabels<'a> = [(&'static str, &'a str); 2];

/// A sticky table metric: name, type, help and how to read it from the stats.
type StickyFamily = (&'static str, Kind, &'static str, fn(&StickyStats) -> u64);

/// A sticky store metric: name, type, help and how to read it.
type StoreFamily = (&'static str, Kind, &'static str, fn(StoreState, &StoreStats) -> u64);

/// The whole `/metrics` text for the current site. Only servers and upstreams
/// of the current configuration are listed; their counters include the
/// traffic of earlier configurations (see `metrics`).
pub fn render_metrics(site: &Site, instance: &metrics::Instance, dropped_lines: u64) -> String {
    // One series per label set, even if a server name appears twice on an address.
    let mut servers = BTreeMap::new();
    for (listener, state) in site.snapshot.listeners.iter().zip(&site.listeners) {
        for server in &state.servers {
            servers.entry((server.config.name.clone(), listener.addr.to_string())).or_insert(server.metrics.clone());
        }
    }
    let mut text = Exposition::default();

    text.family("portico_server_requests_total", Kind::Counter, "Responses sent to clients, by status class.");
    for ((name, listen), metrics) in &servers {
        for (class, count) in STATUS_CLASSES.iter().zip(metrics.requests.get()) {
            text.sample(
                "portico_server_requests_total",
                &[("server", name), ("listen", listen), ("code", class)],
                count,
            );
        }
    }
    text.family(
        "portico_server_request_duration_seconds",
        Kind::Histogram,
        "Time from the request head to the end of the response.",
    );
    for ((name, listen), metrics) in &servers {
        text.histogram(
            "portico_server_request_duration_seconds",
            &[("server", name), ("listen", listen)],
            &metrics.latency,
        );
    }
    text.family("portico_server_sent_bytes_total", Kind::Counter, "Response body bytes sent to clients.");
    for ((name, listen), metrics) in &servers {
        let sent = metrics.sent_bytes.load(Ordering::Relaxed);
        text.sample("portico_server_sent_bytes_total", &[("server", name), ("listen", listen)], sent);
    }
    text.family(
        "portico_server_certificate_expiry_timestamp_seconds",
        Kind::Gauge,
        "When the server's TLS certificate stops being valid (its notAfter), in Unix seconds.",
    );
    for ((name, listen), not_after) in &certificate_expiries(site) {
        text.sample(
            "portico_server_certificate_expiry_timestamp_seconds",
            &[("server", name), ("listen", listen)],
            not_after,
        );
    }

    let peers: Vec<(&Pool, usize, PeerLabels<'_>)> = site
        .pools
        .iter()
        .flat_map(|pool| {
            pool.upstream.peers.iter().enumerate().map(move |(i, peer)| {
                (pool.as_ref(), i, [("upstream", pool.upstream.name.as_str()), ("peer", peer.address.as_str())])
            })
        })
        .collect();
    text.family("portico_upstream_responses_total", Kind::Counter, "Responses received from upstream servers.");
    for (pool, i, [upstream, peer]) in &peers {
        let Some(metrics) = pool.peer_metrics(*i) else { continue };
        for (class, count) in STATUS_CLASSES.iter().zip(metrics.responses.get()) {
            text.sample("portico_upstream_responses_total", &[*upstream, *peer, ("code", class)], count);
        }
    }
    // One gauge or counter per upstream server, each read from the pool.
    let per_peer: [(&str, Kind, &str, &PeerValue); 6] = [
        (
            "portico_upstream_failures_total",
            Kind::Counter,
            "Failed attempts at upstream servers (connect errors, timeouts, bad responses).",
            &|pool, i| pool.peer_metrics(i).map_or(0, |m| m.failures.load(Ordering::Relaxed)),
        ),
        (
            "portico_upstream_selected_total",
            Kind::Counter,
            "Times an upstream server was chosen for an attempt.",
            &|pool, i| pool.peer_metrics(i).map_or(0, |m| m.selected.load(Ordering::Relaxed)),
        ),
        (
            "portico_upstream_connections_opened_total",
            Kind::Counter,
            "Connections opened to upstream servers (each a TLS handshake on an HTTPS upstream).",
            &|pool, i| pool.peer_metrics(i).map_or(0, |m| m.connections_opened.load(Ordering::Relaxed)),
        ),
        (
            "portico_upstream_idle_connections",
            Kind::Gauge,
            "Idle connections to upstream servers kept for reuse.",
            &|pool, i| pool.idle_connections(i) as u64,
        ),
        (
            "portico_upstream_up",
            Kind::Gauge,
            "1 when the upstream server may take traffic now, 0 when failed or down = true.",
            &|pool, i| u64::from(pool.is_usable(i)),
        ),
        ("portico_upstream_fails", Kind::Gauge, "Failures currently counted toward max_fails.", &|pool, i| {
            u64::from(pool.failures(i))
        }),
    ];
    for (name, kind, help, value) in per_peer {
        text.family(name, kind, help);
        for (pool, i, labels) in &peers {
            text.sample(name, labels, value(pool, *i));
        }
    }

    let sticky: Vec<_> = site
        .pools
        .iter()
        .filter_map(|pool| {
            pool.sticky.as_ref().map(|table| (pool.upstream.name.as_str(), table.stats(), table.capacity()))
        })
        .collect();
    let families: [StickyFamily; 6] = [
        ("portico_sticky_entries", Kind::Gauge, "Sessions held in the sticky table.", |s| s.entries as u64),
        ("portico_sticky_hits_total", Kind::Counter, "Sticky lookups that found a live session.", |s| s.hits),
        ("portico_sticky_misses_total", Kind::Counter, "Sticky lookups that found none.", |s| s.misses),
        ("portico_sticky_evictions_total", Kind::Counter, "Sessions dropped to make room.", |s| s.evictions),
        ("portico_sticky_expiries_total", Kind::Counter, "Sessions dropped after timeout unused.", |s| s.expiries),
        ("portico_sticky_learned_total", Kind::Counter, "Sessions learned or rebound.", |s| s.learned),
    ];
    for (name, kind, help, value) in families {
        text.family(name, kind, help);
        for (upstream, stats, _) in &sticky {
            text.sample(name, &[("upstream", upstream)], value(stats));
        }
    }
    text.family("portico_sticky_capacity", Kind::Gauge, "Most sessions the sticky table holds.");
    for (upstream, _, capacity) in &sticky {
        text.sample("portico_sticky_capacity", &[("upstream", upstream)], capacity);
    }

    let stores: Vec<_> = site
        .pools
        .iter()
        .filter_map(|pool| pool.store.as_ref().map(|store| (pool.upstream.name.as_str(), store.state(), store.stats())))
        .collect();
    let families: [StoreFamily; 7] = [
        ("portico_sticky_store_up", Kind::Gauge, "1 while connected to the sticky store (Redis).", |state, _| {
            u64::from(state == StoreState::Up)
        }),
        ("portico_sticky_store_writes_total", Kind::Counter, "Session writes the store accepted.", |_, s| s.writes),
        (
            "portico_sticky_store_writes_dropped_total",
            Kind::Counter,
            "Session writes dropped: queue full (store down or slow) or refused by the store.",
            |_, s| s.writes_dropped,
        ),
        ("portico_sticky_store_lookups_total", Kind::Counter, "Local misses asked of the store.", |_, s| s.lookups),
        ("portico_sticky_store_lookup_hits_total", Kind::Counter, "Store lookups that named a server.", |_, s| {
            s.lookup_hits
        }),
        (
            "portico_sticky_store_lookup_failures_total",
            Kind::Counter,
            "Store lookups that timed out (store_timeout) or failed.",
            |_, s| s.lookup_failures,
        ),
        (
            "portico_sticky_store_lookups_skipped_total",
            Kind::Counter,
            "Local misses not asked of the store: too many unknown sessions at once.",
            |_, s| s.lookups_skipped,
        ),
    ];
    for (name, kind, help, value) in families {
        text.family(name, kind, help);
        for (upstream, state, stats) in &stores {
            text.sample(name, &[("upstream", upstream)], value(*state, stats));
        }
    }

    text.family("portico_connections_active", Kind::Gauge, "Client connections open now.");
    text.sample("portico_connections_active", &[], instance.active_connections());
    text.family(
        "portico_connections_parked",
        Kind::Gauge,
        "Idle HTTP/1 client connections holding no request buffers until the client sends again.",
    );
    text.sample("portico_connections_parked", &[], instance.parked_connections());
    let (ok, error) = instance.reloads();
    text.family("portico_reloads_total", Kind::Counter, "Reloads, by result (error: refused or failed).");
    text.sample("portico_reloads_total", &[("result", "ok")], ok);
    text.sample("portico_reloads_total", &[("result", "error")], error);
    text.family("portico_config_generation", Kind::Gauge, "1 at start, plus one per successful reload.");
    text.sample("portico_config_generation", &[], instance.generation());
    text.family("portico_log_lines_dropped_total", Kind::Counter, "Log lines dropped because a writer fell behind.");
    text.sample("portico_log_lines_dropped_total", &[], dropped_lines);
    text.family("portico_uptime_seconds", Kind::Gauge, "Seconds since portico started.");
    text.sample("portico_uptime_seconds", &[], instance.uptime().as_secs());
    if !site.zones.is_empty() {
        text.family(
            "portico_limit_req_requests_total",
            Kind::Counter,
            "Requests counted by limit_req zones: passed at once, delayed to the rate, or refused.",
        );
        for (config, zone) in site.snapshot.limit_zones.iter().zip(&site.zones) {
            for (result, count) in zone.counts() {
                text.sample(
                    "portico_limit_req_requests_total",
                    &[("zone", config.name.as_str()), ("result", result)],
                    count,
                );
            }
        }
        text.family(
            "portico_limit_req_addresses",
            Kind::Gauge,
            "Client addresses (or, for a zone with a key, keys) a limit_req zone holds now.",
        );
        for (config, zone) in site.snapshot.limit_zones.iter().zip(&site.zones) {
            text.sample("portico_limit_req_addresses", &[("zone", config.name.as_str())], zone.len() as u64);
        }
    }
    // Only the servers of upstreams with a health_check, so that the family's
    // absence says "no active checks" rather than a row of zeros.
    let checked: Vec<_> =
        peers.iter().filter_map(|(pool, i, labels)| Some((pool.checks()?, *pool, *i, labels))).collect();
    if !checked.is_empty() {
        text.family(
            "portico_upstream_health_checks_total",
            Kind::Counter,
            "Active health checks of upstream servers, by result.",
        );
        for (_, pool, i, [upstream, peer]) in &checked {
            let Some(metrics) = pool.peer_metrics(*i) else { continue };
            for (result, counter) in [("passed", &metrics.checks_passed), ("failed", &metrics.checks_failed)] {
                text.sample(
                    "portico_upstream_health_checks_total",
                    &[*upstream, *peer, ("result", result)],
                    counter.load(Ordering::Relaxed),
                );
            }
        }
        text.family(
            "portico_upstream_health_check_passing",
            Kind::Gauge,
            "1 when the active health checks let the upstream server take traffic, 0 when they failed it or have not passed it yet.",
        );
        for (checks, _, i, labels) in &checked {
            text.sample("portico_upstream_health_check_passing", *labels, u64::from(checks.allows(*i)));
        }
    }
    text.finish()
}

/// Each TLS server's certificate end (notAfter, Unix seconds) by server name
/// and listen address, read from the certificates at each call: a walk over a
/// few DER headers each.
fn certificate_expiries(site: &Site) -> BTreeMap<(String, String), i64> {
    let mut expiries = BTreeMap::new();
    for (listener, state) in site.snapshot.listeners.iter().zip(&site.listeners) {
        for server in &state.servers {
            let leaf = server.config.certificate.as_ref().and_then(|certified| certified.cert.first());
            if let Some(validity) = leaf.and_then(|leaf| crate::tls::validity(leaf)) {
                expiries.entry((server.config.name.clone(), listener.addr.to_string())).or_insert(validity.not_after);
            }
        }
    }
    expiries
}

/// The `/status` page: each upstream's servers as NGINX Plus's dashboard
/// shows them, plain HTML without scripts.
pub fn render_status(site: &Site, instance: &metrics::Instance) -> String {
    let mut html = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>portico status</title>\n\
         <style>body{font-family:sans-serif}table{border-collapse:collapse;margin-bottom:1em}\
         td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}td:first-child{text-align:left}\
         .failed,.down,.unhealthy,.checking,.store-down{color:#b00}</style></head><body>\n<h1>portico</h1>\n",
    );
    let uptime = instance.uptime().as_secs();
    let _ = writeln!(
        html,
        "<p>version {} &middot; config generation {} &middot; up {}h{:02}m{:02}s &middot; {} active connections</p>",
        env!("CARGO_PKG_VERSION"),
        instance.generation(),
        uptime / 3600,
        uptime / 60 % 60,
        uptime % 60,
        instance.active_connections(),
    );
    for pool in &site.pools {
        let _ = writeln!(html, "<h2>upstream {}</h2>", escape_html(&pool.upstream.name));
        html.push_str(
            "<table><tr><th>server</th><th>state</th><th>fails</th><th>failures</th>\
             <th>requests</th><th>share</th><th>1xx</th><th>2xx</th><th>3xx</th><th>4xx</th><th>5xx</th></tr>\n",
        );
        let selected = |i: usize| pool.peer_metrics(i).map_or(0, |m| m.selected.load(Ordering::Relaxed));
        let total: u64 = (0..pool.upstream.peers.len()).map(selected).sum();
        for (i, peer) in pool.upstream.peers.iter().enumerate() {
            let state = peer_state(pool, i);
            let requests = selected(i);
            let share = if total == 0 { 0.0 } else { requests as f64 * 100.0 / total as f64 };
            let failures = pool.peer_metrics(i).map_or(0, |m| m.failures.load(Ordering::Relaxed));
            let classes = pool.peer_metrics(i).map_or([0; 5], |m| m.responses.get());
            let _ = write!(
                html,
                "<tr><td>{}</td><td class=\"{state}\">{state}</td><td>{}</td><td>{failures}</td>\
                 <td>{requests}</td><td>{share:.1}%</td>",
                escape_html(&peer.address),
                pool.failures(i),
            );
            for count in classes {
                let _ = write!(html, "<td>{count}</td>");
            }
            html.push_str("</tr>\n");
        }
        html.push_str("</table>\n");
        if let (Some(checks), Some(check)) = (pool.checks(), &pool.upstream.health_check) {
            let port = check.port.map(|port| format!(" on port {port}")).unwrap_or_default();
            let body = check.body.as_ref().map(|text| format!(", the body to contain {text:?}")).unwrap_or_default();
            let _ = writeln!(
                html,
                "<p>health checks: GET {}{port} every {:?}{}</p>",
                escape_html(&check.uri),
                check.interval,
                escape_html(&body)
            );
            for (i, peer) in pool.upstream.peers.iter().enumerate() {
                if let (Verdict::Failing, Some(why)) = (checks.verdict(i), checks.last_failure(i)) {
                    let _ = writeln!(
                        html,
                        "<p class=\"unhealthy\">{}: {}</p>",
                        escape_html(&peer.address),
                        escape_html(&why)
                    );
                }
            }
        }
        if let Some(table) = &pool.sticky {
            let stats = table.stats();
            let _ = writeln!(
                html,
                "<p>sticky sessions: {} of {} entries, {} hits, {} misses, {} learned, {} evictions, {} expiries</p>",
                stats.entries,
                table.capacity(),
                stats.hits,
                stats.misses,
                stats.learned,
                stats.evictions,
                stats.expiries,
            );
        }
        if let Some(store) = &pool.store {
            let state = store.state().as_str();
            let stats = store.stats();
            let _ = writeln!(
                html,
                "<p>sticky store {}: <span class=\"store-{state}\">{state}</span>, {} writes, {} dropped, \
                 {} lookups, {} hits, {} failed, {} skipped</p>",
                escape_html(store.display_url()),
                stats.writes,
                stats.writes_dropped,
                stats.lookups,
                stats.lookup_hits,
                stats.lookup_failures,
                stats.lookups_skipped,
            );
        }
    }
    let expiries = certificate_expiries(site);
    if !expiries.is_empty() {
        html.push_str("<h2>certificates</h2>\n<table><tr><th>server</th><th>listen</th><th>valid until</th><th>days left</th></tr>\n");
        let now = crate::log::unix_now();
        for ((name, listen), not_after) in &expiries {
            let days_left = (not_after - now).div_euclid(86_400);
            // Marked as a failed server is: within the warning's reach, or past it.
            let class = if days_left < crate::tls::EXPIRY_WARNING_DAYS { " class=\"failed\"" } else { "" };
            let _ = writeln!(
                html,
                "<tr><td>{}</td><td>{}</td><td{class}>{}</td><td{class}>{days_left}</td></tr>",
                escape_html(name),
                escape_html(listen),
                crate::log::utc_date(*not_after),
            );
        }
        html.push_str("</table>\n");
    }
    if !site.zones.is_empty() {
        html.push_str(
            "<h2>request rates</h2>\n<table><tr><th>limit_req zone</th><th>key</th><th>rate</th><th>held</th>\
             <th>passed</th><th>delayed</th><th>rejected</th></tr>\n",
        );
        for (config, zone) in site.snapshot.limit_zones.iter().zip(&site.zones) {
            let [(_, passed), (_, delayed), (_, rejected)] = zone.counts();
            let _ = writeln!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} of {}</td><td>{passed}</td><td>{delayed}</td><td>{rejected}</td></tr>",
                escape_html(&config.name),
                escape_html(&config.key_text),
                escape_html(&config.rate_text),
                zone.len(),
                config.capacity,
            );
        }
        html.push_str("</table>\n");
    }
    html.push_str("</body></html>\n");
    html
}

/// Text safe inside HTML elements and attribute values.
fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(escape_html("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
        assert_eq!(escape_html("10.0.0.1:9443"), "10.0.0.1:9443");
    }
}
