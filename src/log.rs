//! Access and error logs: per-server files written off the runtime threads,
//! flushed within 200 ms, reopened on SIGUSR1.

// Every handle formats its line on the calling thread into one `Vec<u8>` and
// hands it to a single writer thread through a bounded channel with `try_send`,
// so a slow disk costs dropped lines (counted), never a stalled request.
//
// Formatting happens on the calling thread because `AccessRecord` borrows its
// strings: copying them into an owned message would cost one allocation per
// field, while the finished line costs exactly one (sized up front from the
// field lengths), and formatting a combined line takes about 300 ns.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write as _};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::runtime::{AccessLogFormat, LogLevel};

mod custom;

pub use custom::{BUILT_IN_FORMATS, Escape, LogFormat, LogFormatError, RequestValue};
pub(crate) use custom::{hostname, pid, query_argument};

/// Lines that may wait for the writer; beyond this they are dropped and counted.
const QUEUE_CAPACITY: usize = 16 * 1024;
/// A file's buffer; a full buffer is written at once.
const BATCH_BYTES: usize = 64 * 1024;
/// Buffered lines reach their file at least this often.
const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// After draining the queue the writer waits this long before looking again,
/// so that the lines logged meanwhile come as one batch. A writer that went
/// straight back to waiting on the queue was woken for every line: a futex
/// call on the request's path and a switch of threads, on the runtime's own
/// CPU when the process is pinned (it halved a pinned proxy's request rate).
const BATCH_PAUSE: Duration = Duration::from_millis(10);

/// Every open log file of the process; hands out cheap cloneable handles.
#[derive(Clone, Default)]
pub struct Logs {
    shared: Arc<Shared>,
}

/// One access log line's facts.
#[derive(Debug)]
pub struct AccessRecord<'a> {
    /// `$remote_addr`.
    pub remote_addr: IpAddr,
    /// When the request arrived (`$time_local`).
    pub time: SystemTime,
    /// The request method as sent.
    pub method: &'a str,
    /// The request target as sent (path and query).
    pub uri: &'a str,
    /// The client's HTTP version.
    pub version: http::Version,
    /// The status sent to the client.
    pub status: u16,
    /// Response body bytes sent to the client.
    pub body_bytes: u64,
    /// The `Referer` header, if any.
    pub referer: Option<&'a str>,
    /// The `User-Agent` header, if any.
    pub user_agent: Option<&'a str>,
    /// `$host` of the request.
    pub host: &'a str,
    /// The upstream server that answered, as written in the config.
    pub upstream_addr: Option<&'a str>,
    /// From the request's arrival to the end of the response.
    pub duration: Duration,
    /// `$remote_port`.
    pub remote_port: u16,
    /// `$server_name`: the server's first name.
    pub server_name: &'a str,
    // The facts below are kept only for a custom format (combined and json
    // do not print them): empty, 0 or `None` for the others.
    /// `$scheme`.
    pub scheme: &'a str,
    /// `$server_port`: the port the request came in on.
    pub server_port: u16,
    /// Each upstream server the request went to, in turn (`$upstream_addr`,
    /// `$upstream_status` and the times, nginx's lists after a retry).
    pub upstream: &'a [UpstreamAttempt<'a>],
    /// `$ssl_protocol` and `$ssl_cipher`.
    pub tls: Option<crate::tls::TlsSession>,
    /// `$connection`: the client connection's serial number.
    pub connection: u64,
    /// `$connection_requests`: the request's number on its connection.
    pub connection_requests: u64,
    /// `$request_length`: the request's head, counted as HTTP/1.1 text, and
    /// the body bytes read.
    pub request_length: u64,
    /// `$request_completion`: whether the answer went whole.
    pub complete: bool,
    /// `$server_addr`: the address the request came in on.
    pub server_addr: Option<IpAddr>,
    /// `$realip_remote_addr`, `$realip_remote_port`: the connection's peer,
    /// before `real_ip_header` named another client.
    pub peer: Option<std::net::SocketAddr>,
    /// The body's length before gzip, when gzip compressed it to
    /// `body_bytes` (`$gzip_ratio`).
    pub gzipped_from: Option<u64>,
    /// What the TLS handshake established about a client certificate, when
    /// it ran under a server's `verify_client` (`$ssl_client_s_dn`, ...).
    pub client_cert: Option<&'a crate::tls::ClientCertificate>,
    /// The values of the answer's headers a custom format prints, in
    /// [`LogFormat::sent_headers`]' order, as they went to the client.
    pub sent_headers: &'a [Option<http::HeaderValue>],
    /// The answer's head as HTTP/1.1 text, counted (`$bytes_sent` adds it
    /// to `body_bytes`); 0 when not kept.
    pub head_bytes: u64,
    /// The values of the request headers and cookies a custom format
    /// prints, in [`LogFormat::request_values`]' order.
    pub headers: &'a [Option<http::HeaderValue>],
    /// The values of the upstream answer's headers a custom format prints,
    /// in [`LogFormat::upstream_headers`]' order (empty without an answer).
    pub upstream_headers: &'a [Option<http::HeaderValue>],
    /// `$request_id`: the one the request's headers had, if they printed it.
    pub request_id: &'a crate::request_id::RequestId,
}

/// One upstream server a request went to, as a custom format prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamAttempt<'a> {
    /// Its address as written in the config.
    pub addr: &'a str,
    /// Its answer's status, or the one its failure gave (502, 504); `None`
    /// when the attempt ended on the client's side.
    pub status: Option<u16>,
    /// Connecting, with the TLS handshake (about 0 for a kept-alive
    /// connection); `None` when no connection was made.
    pub connect_time: Option<Duration>,
    /// To its answer's head.
    pub header_time: Option<Duration>,
    /// To the end of its answer, or its failure.
    pub response_time: Option<Duration>,
    /// Its answer's body bytes (0 for a failure).
    pub length: Option<u64>,
    /// The bytes of HTTP sent to it and received from it (inside TLS);
    /// `None` when no connection was made.
    pub bytes_sent: Option<u64>,
    pub bytes_received: Option<u64>,
}

/// A handle to one access log file.
#[derive(Clone)]
pub struct AccessLog {
    sink: Sink,
    format: AccessLogFormat,
}

/// A handle to one error log file.
#[derive(Clone)]
pub struct ErrorLog {
    sink: Sink,
    level: LogLevel,
}

/// The process-wide `[runtime] error_log` as a `tracing_subscriber` writer:
/// each event is sent as one line through the same writer thread as the other logs.
#[derive(Clone)]
pub struct RuntimeLogWriter {
    sink: Sink,
}

/// One tracing event being formatted; sent to the writer on flush or drop.
pub struct RuntimeLogEvent<'a> {
    sink: &'a Sink,
    buf: Vec<u8>,
}

/// What the registry and its handles share.
#[derive(Default)]
struct Shared {
    registry: Mutex<Registry>,
    /// Lines lost because the queue was full.
    dropped: AtomicU64,
    writer: Arc<WriterState>,
}

#[derive(Default)]
struct Registry {
    by_path: HashMap<PathBuf, usize>,
    /// `None` until the first file is opened, so an unused `Logs` costs no thread.
    sender: Option<SyncSender<Message>>,
    thread: Option<JoinHandle<()>>,
    shut_down: bool,
}

/// What the writer thread owns, behind a lock only start-up and reload contend for.
#[derive(Default)]
struct WriterState {
    files: Mutex<Vec<OpenFile>>,
    /// Bumped by `reopen`; every line carries the value it saw, so the writer
    /// reopens exactly between the lines queued before and after.
    generation: AtomicU64,
    /// How many times the writer has woken to take messages (tests read it).
    rounds: AtomicU64,
}

struct OpenFile {
    path: PathBuf,
    out: BufWriter<File>,
    dirty: bool,
    /// Whether the last write failed (so a full disk is reported once, not per line).
    failing: bool,
}

enum Message {
    Line {
        file: usize,
        generation: u64,
        bytes: Vec<u8>,
    },
    /// Wakes the writer so an idle file is reopened promptly.
    Reopen {
        generation: u64,
    },
    Shutdown,
}

/// Where a handle's lines go.
#[derive(Clone)]
struct Sink {
    sender: SyncSender<Message>,
    shared: Arc<Shared>,
    file: usize,
}

impl Logs {
    /// An empty registry.
    pub fn new() -> Logs {
        Logs::default()
    }

    /// Opens (or shares the already open) access log at `path`, creating parent directories.
    pub fn access(&self, path: &Path, format: AccessLogFormat) -> io::Result<AccessLog> {
        Ok(AccessLog { sink: self.open(path)?, format })
    }

    /// Opens (or shares) an error log at `path`; lines below `level` are dropped.
    pub fn error(&self, path: &Path, level: LogLevel) -> io::Result<ErrorLog> {
        Ok(ErrorLog { sink: self.open(path)?, level })
    }

    /// Opens (or shares) the file at `path` for the process-wide tracing output.
    pub fn runtime_writer(&self, path: &Path) -> io::Result<RuntimeLogWriter> {
        Ok(RuntimeLogWriter { sink: self.open(path)? })
    }

    /// Reopens every file (after logrotate moved them); no line is lost.
    ///
    /// Lines logged before this call go to the old files, lines logged after to the new.
    pub fn reopen(&self) {
        let generation = self.shared.writer.generation.fetch_add(1, Ordering::AcqRel) + 1;
        if let Some(sender) = &self.registry().sender {
            // A full queue means the writer is busy and will see the new
            // generation on the next line or idle tick anyway.
            let _ = sender.try_send(Message::Reopen { generation });
        }
    }

    /// Writes and flushes everything queued, syncs and closes the files, and
    /// stops the writer thread. Blocks until done; later lines are dropped.
    pub fn shutdown(&self) {
        let (sender, thread) = {
            let mut registry = self.registry();
            registry.shut_down = true;
            (registry.sender.take(), registry.thread.take())
        };
        if let Some(sender) = sender {
            // Blocking send: shutdown must queue behind every line already sent.
            let _ = sender.send(Message::Shutdown);
        }
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }

    /// Lines dropped so far because the writer could not keep up.
    pub fn dropped_lines(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.shared.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn open(&self, path: &Path) -> io::Result<Sink> {
        // Absolute, so a reopen after a change of directory finds the same file.
        let path = std::path::absolute(path)?;
        let mut registry = self.registry();
        if registry.shut_down {
            return Err(io::Error::other("the log writer has shut down"));
        }
        let file = match registry.by_path.get(&path) {
            Some(&file) => file,
            None => {
                let out = open_append(&path)?;
                let mut files = self.shared.writer.files();
                files.push(OpenFile {
                    path: path.clone(),
                    out: BufWriter::with_capacity(BATCH_BYTES, out),
                    dirty: false,
                    failing: false,
                });
                registry.by_path.insert(path, files.len() - 1);
                files.len() - 1
            }
        };
        let sender = match &registry.sender {
            Some(sender) => sender.clone(),
            None => {
                let (sender, receiver) = std::sync::mpsc::sync_channel(QUEUE_CAPACITY);
                let writer = Arc::clone(&self.shared.writer);
                // Read here, not in the thread: a reopen between spawning and the
                // thread's first instruction must still count as new.
                let generation = writer.generation.load(Ordering::Acquire);
                let thread = std::thread::Builder::new()
                    .name("portico-log".into())
                    .spawn(move || writer.run(&receiver, generation))?;
                registry.thread = Some(thread);
                registry.sender = Some(sender.clone());
                sender
            }
        };
        Ok(Sink { sender, shared: Arc::clone(&self.shared), file })
    }
}

impl std::fmt::Debug for Logs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logs").field("dropped_lines", &self.dropped_lines()).finish_non_exhaustive()
    }
}

impl AccessLog {
    /// Whether its lines print `$host` (nginx's `combined` does not).
    pub fn prints_host(&self) -> bool {
        match &self.format {
            AccessLogFormat::Combined => false,
            AccessLogFormat::Json => true,
            AccessLogFormat::Custom(format) => format.prints_host(),
        }
    }

    /// The custom format, if it is one: what else a line needs kept.
    pub fn custom(&self) -> Option<&Arc<LogFormat>> {
        match &self.format {
            AccessLogFormat::Custom(format) => Some(format),
            _ => None,
        }
    }

    /// Queues one line; never blocks.
    pub fn log(&self, record: &AccessRecord<'_>) {
        let fields = record.method.len()
            + record.uri.len()
            + record.referer.map_or(0, str::len)
            + record.user_agent.map_or(0, str::len);
        let mut line = Vec::with_capacity(160 + fields + record.host.len());
        match &self.format {
            AccessLogFormat::Combined => format_combined(record, &mut line),
            AccessLogFormat::Json => format_json(record, &mut line),
            AccessLogFormat::Custom(format) => format.format(record, &mut line),
        }
        self.sink.send(line);
    }
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog").field("format", &self.format).finish_non_exhaustive()
    }
}

impl ErrorLog {
    /// Queues one line; never blocks.
    pub fn log(&self, level: LogLevel, message: std::fmt::Arguments<'_>) {
        if level > self.level {
            return;
        }
        let mut line = Vec::with_capacity(128);
        format_error(SystemTime::now(), level, message, &mut line);
        self.sink.send(line);
    }
}

impl std::fmt::Debug for ErrorLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ErrorLog").field("level", &self.level).finish_non_exhaustive()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RuntimeLogWriter {
    type Writer = RuntimeLogEvent<'a>;

    fn make_writer(&'a self) -> RuntimeLogEvent<'a> {
        RuntimeLogEvent { sink: &self.sink, buf: Vec::new() }
    }
}

impl io::Write for RuntimeLogEvent<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.sink.send(std::mem::take(&mut self.buf));
        }
        Ok(())
    }
}

impl Drop for RuntimeLogEvent<'_> {
    fn drop(&mut self) {
        let _ = io::Write::flush(self);
    }
}

impl Sink {
    fn send(&self, bytes: Vec<u8>) {
        let generation = self.shared.writer.generation.load(Ordering::Acquire);
        let message = Message::Line { file: self.file, generation, bytes };
        match self.sender.try_send(message) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
            // The writer has shut down: nothing will be written any more.
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

impl WriterState {
    fn files(&self) -> MutexGuard<'_, Vec<OpenFile>> {
        self.files.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The writer thread: drains the queue in batches (`BATCH_PAUSE`),
    /// flushes every `FLUSH_INTERVAL`.
    fn run(&self, receiver: &Receiver<Message>, mut current: u64) {
        let mut next_flush = Instant::now() + FLUSH_INTERVAL;
        // Whether the last round took a message: then pause before the next.
        let mut busy = false;
        loop {
            let next = if busy {
                std::thread::sleep(BATCH_PAUSE);
                receiver.try_recv().map_err(|e| match e {
                    TryRecvError::Empty => RecvTimeoutError::Timeout,
                    TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
                })
            } else {
                receiver.recv_timeout(next_flush.saturating_duration_since(Instant::now()))
            };
            busy = next.is_ok();
            if busy {
                self.rounds.fetch_add(1, Ordering::Relaxed);
            }
            let mut message = next;
            loop {
                if !self.handle(message, &mut current) {
                    return self.close_all();
                }
                match receiver.try_recv() {
                    Ok(queued) => message = Ok(queued),
                    Err(_) => break,
                }
            }
            if Instant::now() >= next_flush {
                for open in self.files().iter_mut() {
                    open.flush();
                }
                next_flush = Instant::now() + FLUSH_INTERVAL;
            }
        }
    }

    /// Handles one message (or the queue's timeout); false once the writer
    /// is to stop.
    fn handle(&self, message: Result<Message, RecvTimeoutError>, current: &mut u64) -> bool {
        match message {
            Ok(Message::Line { file, generation, bytes }) => {
                let mut files = self.files();
                catch_up(&mut files, generation, current);
                if let Some(open) = files.get_mut(file) {
                    open.write(&bytes);
                }
            }
            Ok(Message::Reopen { generation }) => catch_up(&mut self.files(), generation, current),
            Ok(Message::Shutdown) | Err(RecvTimeoutError::Disconnected) => return false,
            // The queue is empty, so no line from before a reopen is still waiting.
            Err(RecvTimeoutError::Timeout) => {
                catch_up(&mut self.files(), self.generation.load(Ordering::Acquire), current);
            }
        }
        true
    }

    /// At shutdown: everything written and synced, the files closed.
    fn close_all(&self) {
        let mut files = self.files();
        for open in files.iter_mut() {
            open.flush();
            if let Err(e) = open.out.get_ref().sync_all() {
                eprintln!("portico: cannot sync log {}: {e}", open.path.display());
            }
        }
        // Dropping closes them.
        files.clear();
    }
}

/// Reopens every file when `generation` is newer than the one they were
/// opened for (`current`, then brought up to it).
fn catch_up(files: &mut [OpenFile], generation: u64, current: &mut u64) {
    if generation > *current {
        *current = generation;
        reopen_all(files);
    }
}

fn reopen_all(files: &mut [OpenFile]) {
    for open in files {
        open.flush();
        match open_append(&open.path) {
            Ok(file) => open.out = BufWriter::with_capacity(BATCH_BYTES, file),
            // Keep writing to the old file rather than losing lines, as nginx does.
            Err(e) => eprintln!("portico: cannot reopen log {}: {e}", open.path.display()),
        }
    }
}

impl OpenFile {
    fn write(&mut self, bytes: &[u8]) {
        let result = self.out.write_all(bytes);
        self.dirty = true;
        self.report(result);
    }

    fn flush(&mut self) {
        if self.dirty {
            let result = self.out.flush();
            self.dirty = false;
            self.report(result);
        }
    }

    fn report(&mut self, result: io::Result<()>) {
        match result {
            Ok(()) => self.failing = false,
            Err(e) => {
                if !self.failing {
                    eprintln!("portico: cannot write log {}: {e}", self.path.display());
                }
                self.failing = true;
            }
        }
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

/// Appends `record` as one nginx `combined` line (with its newline) to `out`.
pub fn format_combined(record: &AccessRecord<'_>, out: &mut Vec<u8>) {
    push_ip(out, record.remote_addr);
    out.extend_from_slice(b" - - [");
    push_time_local(out, &Utc::from(record.time));
    out.extend_from_slice(b"] \"");
    push_nginx_escaped(out, record.method.as_bytes());
    out.push(b' ');
    push_nginx_escaped(out, record.uri.as_bytes());
    out.push(b' ');
    out.extend_from_slice(protocol(record.version).as_bytes());
    out.extend_from_slice(b"\" ");
    push_num(out, record.status, 1);
    out.push(b' ');
    push_num(out, record.body_bytes, 1);
    out.extend_from_slice(b" \"");
    push_nginx_escaped(out, record.referer.unwrap_or("-").as_bytes());
    out.extend_from_slice(b"\" \"");
    push_nginx_escaped(out, record.user_agent.unwrap_or("-").as_bytes());
    out.extend_from_slice(b"\"\n");
}

/// Appends `record` as one JSON object (with its newline) to `out`.
pub fn format_json(record: &AccessRecord<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"time\":\"");
    push_iso8601(out, &Utc::from(record.time));
    out.extend_from_slice(b"Z\",\"remote_addr\":\"");
    push_ip(out, record.remote_addr);
    out.extend_from_slice(b"\",\"method\":");
    push_json_string(out, Some(record.method));
    out.extend_from_slice(b",\"uri\":");
    push_json_string(out, Some(record.uri));
    out.extend_from_slice(b",\"protocol\":\"");
    out.extend_from_slice(protocol(record.version).as_bytes());
    out.extend_from_slice(b"\",\"status\":");
    push_num(out, record.status, 1);
    out.extend_from_slice(b",\"body_bytes_sent\":");
    push_num(out, record.body_bytes, 1);
    out.extend_from_slice(b",\"referer\":");
    push_json_string(out, record.referer);
    out.extend_from_slice(b",\"user_agent\":");
    push_json_string(out, record.user_agent);
    out.extend_from_slice(b",\"host\":");
    push_json_string(out, Some(record.host));
    out.extend_from_slice(b",\"upstream_addr\":");
    push_json_string(out, record.upstream_addr);
    out.extend_from_slice(b",\"request_time\":");
    push_seconds(out, record.duration);
    out.extend_from_slice(b"}\n");
}

/// Appends one nginx-like error log line: `2026/11/26 10:19:45 [error] message`.
fn format_error(time: SystemTime, level: LogLevel, message: std::fmt::Arguments<'_>, out: &mut Vec<u8>) {
    push_date_time(out, &Utc::from(time), b'/', b' ');
    let level = match level {
        LogLevel::Error => "error",
        LogLevel::Warn => "warn",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
    };
    let _ = write!(out, " [{level}] ");
    let _ = OneLine(out).write_fmt(message);
    out.push(b'\n');
}

/// Writes formatted text with CR and LF replaced by spaces, so an entry is one line.
struct OneLine<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for OneLine<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend(s.bytes().map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }));
        Ok(())
    }
}

/// The version as nginx's `$server_protocol` prints it.
pub(crate) fn protocol(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// nginx's access log escaping: `"`, `\` and bytes outside printable ASCII
/// become `\xHH`, so a client cannot end a field or forge a line.
fn push_nginx_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            out.extend_from_slice(&bytes[start..i]);
            out.extend_from_slice(&[b'\\', b'x', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
            start = i + 1;
        }
    }
    out.extend_from_slice(&bytes[start..]);
}

/// A JSON string literal, or `null` for `None`.
fn push_json_string(out: &mut Vec<u8>, s: Option<&str>) {
    let Some(s) = s else {
        out.extend_from_slice(b"null");
        return;
    };
    out.push(b'"');
    push_json_escaped(out, s.as_bytes());
    out.push(b'"');
}

/// `bytes` escaped for the inside of a JSON string. Bytes that are not
/// UTF-8 (a header value may carry any) are read as Latin-1, so that the
/// line stays valid JSON.
fn push_json_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let utf8 = std::str::from_utf8(bytes).is_ok();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            // DEL is valid JSON but would reach a terminal reading the file raw.
            0..0x20 | 0x7f => b"",
            0x80.. if !utf8 => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if short.is_empty() {
            out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
        } else {
            out.extend_from_slice(short);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Seconds with milliseconds, as nginx's `$request_time`.
fn push_seconds(out: &mut Vec<u8>, duration: Duration) {
    let millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    push_num(out, millis / 1000, 1);
    out.push(b'.');
    push_num(out, millis % 1000, 3);
}

/// `n` in decimal, zero-padded to at least `width` digits (at most 20).
///
/// By hand rather than `write!`: the format machinery is most of a line's cost.
fn push_num(out: &mut Vec<u8>, n: impl Into<u64>, width: usize) {
    let mut n = n.into();
    let mut digits = [b'0'; 20];
    let mut start = digits.len();
    while n > 0 || start == digits.len() {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    start = start.min(digits.len().saturating_sub(width));
    out.extend_from_slice(&digits[start..]);
}

/// An address as `Display` writes it; IPv4 by hand, as `core::fmt` made it
/// the dearest part of an access line.
fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                push_num(out, octet, 1);
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// `$time_local` in UTC: `26/Nov/2026:10:19:45 +0000`.
fn push_time_local(out: &mut Vec<u8>, time: &Utc) {
    push_num(out, time.day, 2);
    out.push(b'/');
    out.extend_from_slice(MONTHS[usize::from(time.month - 1)].as_bytes());
    out.push(b'/');
    push_num(out, time.year, 4);
    out.push(b':');
    push_clock(out, time, b':');
    out.extend_from_slice(b" +0000");
}

/// `2026-11-26T10:19:45`, an ISO 8601 date and time without its zone.
fn push_iso8601(out: &mut Vec<u8>, time: &Utc) {
    push_date_time(out, time, b'-', b'T');
}

/// `YYYY{sep}MM{sep}DD{between}HH:MM:SS`.
fn push_date_time(out: &mut Vec<u8>, time: &Utc, sep: u8, between: u8) {
    push_num(out, time.year, 4);
    out.push(sep);
    push_num(out, u32::from(time.month), 2);
    out.push(sep);
    push_num(out, time.day, 2);
    out.push(between);
    push_clock(out, time, b':');
}

/// `HH:MM:SS` with `sep` between the fields.
fn push_clock(out: &mut Vec<u8>, time: &Utc, sep: u8) {
    push_num(out, time.hour, 2);
    out.push(sep);
    push_num(out, time.minute, 2);
    out.push(sep);
    push_num(out, time.second, 2);
}

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// A UTC civil time, to the second.
#[derive(Debug, PartialEq, Eq)]
struct Utc {
    year: u32,
    /// 1..=12
    month: u8,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

impl From<SystemTime> for Utc {
    fn from(time: SystemTime) -> Utc {
        // A clock before 1970 is a broken clock; print the epoch rather than fail.
        let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let (year, month, day) = civil_from_days(secs / 86_400);
        let of_day = secs % 86_400;
        Utc {
            year,
            month,
            day,
            hour: (of_day / 3600) as u32,
            minute: (of_day / 60 % 60) as u32,
            second: (of_day % 60) as u32,
        }
    }
}

/// Seconds since the Unix epoch, now.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
}

/// `2026-11-28 13:05 UTC` for Unix seconds (dates before 1970 as 1970-01-01):
/// certificate dates in warnings and on `/status`.
pub(crate) fn utc_date(unix: i64) -> String {
    let unix = u64::try_from(unix).unwrap_or(0);
    let (year, month, day) = civil_from_days(unix / 86_400);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02} UTC", unix % 86_400 / 3_600, unix % 3_600 / 60)
}

/// Year, month, day of the `days`th day after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, restricted to dates after the epoch).
fn civil_from_days(days: u64) -> (u32, u8, u32) {
    // Shift to 0000-03-01 so the leap day ends each 400-year era's years.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let march_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * march_month + 2) / 5 + 1;
    let month = if march_month < 10 { march_month + 3 } else { march_month - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (u32::try_from(year).unwrap_or(u32::MAX), month as u8, day as u32)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    use crate::test_support::TempDir;

    /// 2026-11-26 10:19:45 UTC.
    pub(super) fn fixed_time() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_795_688_385)
    }

    static ID: crate::request_id::RequestId = crate::request_id::RequestId::new();

    /// The one server the fixture's request went to.
    pub(super) const UPSTREAM: UpstreamAttempt<'static> = UpstreamAttempt {
        addr: "10.0.0.1:9443",
        status: Some(200),
        connect_time: Some(Duration::from_micros(3_400)),
        header_time: Some(Duration::from_micros(200_100)),
        response_time: Some(Duration::from_micros(1_200_300)),
        length: Some(5120),
        bytes_sent: Some(412),
        bytes_received: Some(5391),
    };

    pub(super) fn record<'a>() -> AccessRecord<'a> {
        AccessRecord {
            remote_addr: "192.0.2.7".parse().unwrap(),
            time: fixed_time(),
            method: "GET",
            uri: "/store/apis?page=2",
            version: http::Version::HTTP_11,
            status: 200,
            body_bytes: 5120,
            referer: Some("https://am.example.com/"),
            user_agent: Some("curl/8.5.0"),
            host: "am.example.com",
            upstream_addr: Some("10.0.0.1:9443"),
            duration: Duration::from_micros(1_234_567),
            remote_port: 51234,
            scheme: "https",
            server_name: "am.example.com",
            server_port: 443,
            upstream: &[UPSTREAM],
            tls: Some(crate::tls::TlsSession { protocol: "TLSv1.3", cipher: "TLS_AES_128_GCM_SHA256", resumed: false }),
            connection: 7,
            connection_requests: 3,
            request_length: 412,
            complete: true,
            server_addr: Some("10.0.0.100".parse().unwrap()),
            peer: Some("192.0.2.1:40000".parse().unwrap()),
            gzipped_from: None,
            client_cert: None,
            sent_headers: &[],
            head_bytes: 180,
            headers: &[],
            upstream_headers: &[],
            request_id: &ID,
        }
    }

    fn combined(record: &AccessRecord<'_>) -> String {
        let mut out = Vec::new();
        format_combined(record, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_default()
    }

    #[test]
    fn combined_line_is_nginx_combined() {
        assert_eq!(
            combined(&record()),
            "192.0.2.7 - - [26/Nov/2026:10:19:45 +0000] \"GET /store/apis?page=2 HTTP/1.1\" \
             200 5120 \"https://am.example.com/\" \"curl/8.5.0\"\n"
        );
        let bare = AccessRecord {
            remote_addr: "2001:db8::1".parse().unwrap(),
            version: http::Version::HTTP_2,
            referer: None,
            user_agent: None,
            status: 404,
            body_bytes: 0,
            ..record()
        };
        assert_eq!(
            combined(&bare),
            "2001:db8::1 - - [26/Nov/2026:10:19:45 +0000] \"GET /store/apis?page=2 HTTP/2.0\" \
             404 0 \"-\" \"-\"\n"
        );
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for ip in [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.0.1",
            "192.0.2.70",
            "1.23.4.100",
            "2001:db8::1",
            "::1",
            "::ffff:192.0.2.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut out = Vec::new();
            push_ip(&mut out, ip);
            assert_eq!(String::from_utf8(out).unwrap(), ip.to_string());
        }
    }

    #[test]
    fn combined_escapes_hostile_fields() {
        let hostile =
            AccessRecord { uri: "/a\"b", user_agent: Some("evil\" 200 0 \"-\"\n10.0.0.9 - - [x] \\é"), ..record() };
        let line = combined(&hostile);
        assert_eq!(
            line,
            "192.0.2.7 - - [26/Nov/2026:10:19:45 +0000] \"GET /a\\x22b HTTP/1.1\" 200 5120 \
             \"https://am.example.com/\" \
             \"evil\\x22 200 0 \\x22-\\x22\\x0A10.0.0.9 - - [x] \\x5C\\xC3\\xA9\"\n"
        );
        assert_eq!(line.matches('\n').count(), 1);
    }

    #[test]
    fn json_line_is_the_expected_object() {
        let mut out = Vec::new();
        let hostile =
            AccessRecord { user_agent: Some("a\"b\\c\nd\u{1}é"), referer: None, upstream_addr: None, ..record() };
        format_json(&hostile, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"time\":\"2026-11-26T10:19:45Z\",\"remote_addr\":\"192.0.2.7\",\
             \"method\":\"GET\",\"uri\":\"/store/apis?page=2\",\"protocol\":\"HTTP/1.1\",\
             \"status\":200,\"body_bytes_sent\":5120,\"referer\":null,\
             \"user_agent\":\"a\\\"b\\\\c\\nd\\u0001é\",\"host\":\"am.example.com\",\
             \"upstream_addr\":null,\"request_time\":1.234}\n"
        );
    }

    #[test]
    fn json_request_time_is_seconds_with_milliseconds() {
        for (millis, text) in [(0, "0.000"), (5, "0.005"), (999, "0.999"), (61_500, "61.500")] {
            let mut out = Vec::new();
            format_json(&AccessRecord { duration: Duration::from_millis(millis), ..record() }, &mut out);
            let line = String::from_utf8(out).unwrap();
            assert!(line.ends_with(&format!(",\"request_time\":{text}}}\n")), "{line}");
        }
    }

    #[test]
    fn numbers_are_padded() {
        let mut out = Vec::new();
        push_num(&mut out, 0u32, 1);
        push_num(&mut out, 0u32, 2);
        push_num(&mut out, 7u32, 4);
        push_num(&mut out, 12345u32, 2);
        push_num(&mut out, u64::MAX, 1);
        assert_eq!(out, b"00000071234518446744073709551615" as &[u8]);
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(951_868_799 / 86_400), (2000, 2, 29));
        assert_eq!(civil_from_days(11_017), (2000, 3, 1));
        assert_eq!(civil_from_days(20_088), (2024, 12, 31));
        let t = Utc::from(UNIX_EPOCH + Duration::from_secs(951_868_799));
        assert_eq!((t.hour, t.minute, t.second), (23, 59, 59));
    }

    #[test]
    fn error_log_filters_by_level_and_keeps_one_line() {
        let dir = TempDir::new("level");
        let path = dir.0.join("error.log");
        let logs = Logs::new();
        let log = logs.error(&path, LogLevel::Warn).unwrap();
        log.log(LogLevel::Error, format_args!("upstream {} down\r\nforged", "am"));
        log.log(LogLevel::Warn, format_args!("slow"));
        log.log(LogLevel::Info, format_args!("info"));
        log.log(LogLevel::Debug, format_args!("debug"));
        logs.shutdown();
        let text = read(&path);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        // `YYYY/MM/DD HH:MM:SS ` is 20 bytes.
        assert_eq!(&lines[0][20..], "[error] upstream am down  forged");
        assert_eq!(&lines[0][4..5], "/");
        assert_eq!(&lines[1][20..], "[warn] slow");

        let mut out = Vec::new();
        format_error(fixed_time(), LogLevel::Info, format_args!("x"), &mut out);
        assert_eq!(out, b"2026/11/26 10:19:45 [info] x\n");
    }

    #[test]
    fn every_line_is_written_by_shutdown() {
        let dir = TempDir::new("all");
        let path = dir.0.join("access.log");
        let logs = Logs::new();
        let log = logs.access(&path, AccessLogFormat::Combined).unwrap();
        for _ in 0..1000 {
            log.log(&record());
        }
        logs.shutdown();
        logs.shutdown();
        log.log(&record());
        assert_eq!(read(&path).lines().count(), 1000);
        assert_eq!(logs.dropped_lines(), 0);
    }

    #[test]
    fn a_line_appears_without_shutdown() {
        let dir = TempDir::new("prompt");
        let path = dir.0.join("access.log");
        let logs = Logs::new();
        let log = logs.access(&path, AccessLogFormat::Json).unwrap();
        let logged = Instant::now();
        log.log(&record());
        while read(&path).is_empty() && logged.elapsed() < Duration::from_secs(1) {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(read(&path).lines().count(), 1);
        logs.shutdown();
    }

    #[test]
    fn reopen_splits_lines_between_old_and_new_file() {
        let dir = TempDir::new("reopen");
        let path = dir.0.join("access.log");
        let rotated = dir.0.join("access.log.1");
        let logs = Logs::new();
        let log = logs.access(&path, AccessLogFormat::Combined).unwrap();
        let a = AccessRecord { uri: "/A", ..record() };
        let b = AccessRecord { uri: "/B", ..record() };
        std::fs::rename(&path, &rotated).unwrap();
        log.log(&a);
        logs.reopen();
        log.log(&b);
        logs.shutdown();
        let old = read(&rotated);
        let new = read(&path);
        assert_eq!(old.lines().count(), 1, "{old}");
        assert!(old.contains("GET /A "), "{old}");
        assert_eq!(new.lines().count(), 1, "{new}");
        assert!(new.contains("GET /B "), "{new}");
    }

    #[test]
    fn same_path_shares_one_file() {
        let dir = TempDir::new("share");
        let path = dir.0.join("both.log");
        let logs = Logs::new();
        let access = logs.access(&path, AccessLogFormat::Combined).unwrap();
        let error = logs.error(&path, LogLevel::Error).unwrap();
        access.log(&record());
        error.log(LogLevel::Error, format_args!("boom"));
        logs.shutdown();
        let text = read(&path);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[1].ends_with("[error] boom"));
    }

    #[test]
    fn parent_directories_are_created() {
        let dir = TempDir::new("parents");
        let path = dir.0.join("am/https/access.log");
        let logs = Logs::new();
        logs.access(&path, AccessLogFormat::Combined).unwrap();
        assert!(path.is_file());
        logs.shutdown();
    }

    #[test]
    fn unwritable_path_is_an_error() {
        let dir = TempDir::new("unwritable");
        let file = dir.0.join("plain");
        std::fs::write(&file, "").unwrap();
        let logs = Logs::new();
        assert!(logs.access(&file.join("access.log"), AccessLogFormat::Combined).is_err());
        assert!(logs.error(&file.join("error.log"), LogLevel::Warn).is_err());
        logs.shutdown();
    }

    #[test]
    fn full_queue_drops_and_counts() {
        let dir = TempDir::new("full");
        let path = dir.0.join("access.log");
        let logs = Logs::new();
        let log = logs.access(&path, AccessLogFormat::Combined).unwrap();
        {
            // Holding the writer's files stalls it after at most one line.
            let _stall = logs.shared.writer.files();
            for _ in 0..QUEUE_CAPACITY + 10 {
                log.log(&record());
            }
            assert!(logs.dropped_lines() >= 9, "{}", logs.dropped_lines());
        }
        logs.shutdown();
        let written = read(&path).lines().count() as u64;
        assert_eq!(written + logs.dropped_lines(), QUEUE_CAPACITY as u64 + 10);
    }

    #[test]
    fn the_writer_takes_lines_in_batches() {
        let dir = TempDir::new("batches");
        let path = dir.0.join("access.log");
        let logs = Logs::new();
        let log = logs.access(&path, AccessLogFormat::Combined).unwrap();
        // Lines a little apart, as requests come: a writer that waits on the
        // queue again after each one is woken once per line.
        let lines = 2000u64;
        let start = Instant::now();
        for _ in 0..lines {
            log.log(&record());
            std::thread::sleep(Duration::from_micros(100));
        }
        let elapsed = start.elapsed();
        let rounds = logs.shared.writer.rounds.load(Ordering::Relaxed);
        // One round per pause at most (plus the first); however slow the machine.
        let most = (elapsed.as_millis() / BATCH_PAUSE.as_millis()) as u64 + 2;
        assert!(rounds <= most && rounds < lines / 2, "{rounds} rounds for {lines} lines in {elapsed:?}");
        logs.shutdown();
        assert_eq!(read(&path).lines().count() as u64, lines);
    }

    #[test]
    fn runtime_writer_takes_tracing_events() {
        let dir = TempDir::new("runtime");
        let path = dir.0.join("portico.log");
        let logs = Logs::new();
        let writer = logs.runtime_writer(&path).unwrap();
        let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(writer).finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!("first");
            tracing::error!("second");
        });
        logs.shutdown();
        let text = read(&path);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].contains("WARN") && lines[0].ends_with("first"));
        assert!(lines[1].contains("ERROR") && lines[1].ends_with("second"));
    }
}
