//! Protocol switches (WebSocket): once both sides answered 101, bytes are
//! copied both ways until either side closes or the tunnel is idle too long.

use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::exchange::Exchange;
use crate::upstream::http1::Conn;

/// Copies bytes between the client and the upstream once the client's side
/// has switched too (the upstream's 101 is in); closes the tunnel after
/// `idle_timeout` without traffic either way.
pub async fn tunnel(client: OnUpgrade, upstream: Conn, idle_timeout: Duration, mut exchange: Exchange) {
    exchange.upstream_answered();
    let client = match client.await {
        Ok(client) => client,
        Err(e) => {
            exchange.upstream_error(format_args!("protocol switch failed: {e}"));
            exchange.finish(0, false);
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let (mut upstream, early) = upstream.into_parts();
    let mut sent = early.len() as u64;
    // What the server sent right behind its 101 came in with the head.
    if !early.is_empty() && client.write_all(&early).await.is_err() {
        exchange.finish(0, false);
        return;
    }
    let (mut client_read, mut client_write) = tokio::io::split(&mut client);
    let (mut upstream_read, mut upstream_write) = tokio::io::split(&mut upstream);
    let mut to_upstream = vec![0u8; 16 * 1024];
    let mut to_client = vec![0u8; 16 * 1024];
    let (mut client_open, mut upstream_open) = (true, true);
    while client_open || upstream_open {
        let step = tokio::time::timeout(idle_timeout, async {
            tokio::select! {
                read = client_read.read(&mut to_upstream), if client_open => match read {
                    Ok(0) | Err(_) => {
                        client_open = false;
                        let _ = upstream_write.shutdown().await;
                        Ok(())
                    }
                    Ok(n) => upstream_write.write_all(&to_upstream[..n]).await,
                },
                read = upstream_read.read(&mut to_client), if upstream_open => match read {
                    Ok(0) | Err(_) => {
                        upstream_open = false;
                        let _ = client_write.shutdown().await;
                        Ok(())
                    }
                    Ok(n) => {
                        sent += n as u64;
                        client_write.write_all(&to_client[..n]).await
                    }
                },
            }
        })
        .await;
        match step {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break,
            Err(_) => {
                exchange.error(
                    crate::config::runtime::LogLevel::Info,
                    format_args!("tunnel idle for {idle_timeout:?} (read_timeout), closed"),
                );
                break;
            }
        }
    }
    exchange.finish(sent, true);
}
