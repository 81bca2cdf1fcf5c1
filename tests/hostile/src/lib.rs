//! A hostile HTTP/2 peer, written frame by frame, and what the tests around
//! it need: the target node as a process of its own ([`Target`]), its
//! memory ([`Target::peak_rss`]), and a legitimate caller that keeps
//! calling while an attack runs ([`LegitCaller`]).
//!
//! [`RawConn`] speaks HTTP/2 the way an attacker does: it writes the frames
//! it is told to (no library checks them), honours the peer's flow control
//! only where the test asks it to ([`RawConn::send_data`]), and records
//! what comes back (a reader thread parses every frame, keeps the send
//! windows, and acknowledges SETTINGS unless told not to). [`hpack`] makes
//! header blocks by hand, including the ones no encoder would make.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// HTTP/2 frame types and flags (RFC 9113 §6).
pub mod kind {
    /// DATA.
    pub const DATA: u8 = 0x0;
    /// HEADERS.
    pub const HEADERS: u8 = 0x1;
    /// RST_STREAM.
    pub const RST_STREAM: u8 = 0x3;
    /// SETTINGS.
    pub const SETTINGS: u8 = 0x4;
    /// PING.
    pub const PING: u8 = 0x6;
    /// GOAWAY.
    pub const GOAWAY: u8 = 0x7;
    /// WINDOW_UPDATE.
    pub const WINDOW_UPDATE: u8 = 0x8;
    /// CONTINUATION.
    pub const CONTINUATION: u8 = 0x9;

    /// END_STREAM (DATA, HEADERS).
    pub const END_STREAM: u8 = 0x1;
    /// ACK (SETTINGS, PING).
    pub const ACK: u8 = 0x1;
    /// END_HEADERS (HEADERS, CONTINUATION).
    pub const END_HEADERS: u8 = 0x4;

    /// SETTINGS_INITIAL_WINDOW_SIZE.
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
    /// SETTINGS_MAX_FRAME_SIZE.
    pub const MAX_FRAME_SIZE: u16 = 0x5;
}

/// HTTP/2 error codes the tests look for.
pub mod code {
    /// NO_ERROR.
    pub const NO_ERROR: u32 = 0x0;
    /// REFUSED_STREAM.
    pub const REFUSED_STREAM: u32 = 0x7;
    /// ENHANCE_YOUR_CALM.
    pub const ENHANCE_YOUR_CALM: u32 = 0xb;
}

/// Header blocks by hand (RFC 7541): literals without Huffman coding.
pub mod header_block {
    /// An integer with an `n`-bit prefix, its first byte or-ed with `high`.
    pub fn integer(out: &mut Vec<u8>, value: usize, n: u32, high: u8) {
        let max = (1usize << n) - 1;
        if value < max {
            out.push(high | value as u8);
            return;
        }
        out.push(high | max as u8);
        let mut rest = value - max;
        while rest >= 128 {
            out.push((rest % 128) as u8 | 0x80);
            rest /= 128;
        }
        out.push(rest as u8);
    }

    fn string(out: &mut Vec<u8>, s: &[u8]) {
        integer(out, s.len(), 7, 0);
        out.extend_from_slice(s);
    }

    /// A header field from the static or dynamic table.
    pub fn indexed(out: &mut Vec<u8>, index: usize) {
        integer(out, index, 7, 0x80);
    }

    /// A literal field that is not added to the dynamic table.
    pub fn literal(out: &mut Vec<u8>, name: &str, value: &[u8]) {
        out.push(0x00);
        string(out, name.as_bytes());
        string(out, value);
    }

    /// A literal field added to the dynamic table (as index 62 next).
    pub fn literal_indexed(out: &mut Vec<u8>, name: &str, value: &[u8]) {
        out.push(0x40);
        string(out, name.as_bytes());
        string(out, value);
    }

    /// The head of a gRPC call of the Raft service's `method`.
    pub fn grpc_request(method: &str) -> Vec<u8> {
        let mut out = Vec::new();
        literal(&mut out, ":method", b"POST");
        literal(&mut out, ":scheme", b"http");
        let path = format!("/proto.raft.v1.RaftTransportService/{method}");
        literal(&mut out, ":path", path.as_bytes());
        literal(&mut out, ":authority", b"target");
        literal(&mut out, "content-type", b"application/grpc");
        literal(&mut out, "te", b"trailers");
        out
    }
}

/// One frame: its header fields and payload.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Frame type.
    pub kind: u8,
    /// Flags.
    pub flags: u8,
    /// Stream identifier.
    pub stream: u32,
    /// Payload.
    pub payload: Vec<u8>,
    /// For HEADERS: the decoded header list (with its CONTINUATIONs).
    pub headers: Vec<(String, String)>,
}

impl Frame {
    /// The value of header `name` in a HEADERS frame.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The gRPC status of a HEADERS frame that carries one (trailers, or a
    /// Trailers-Only answer).
    pub fn grpc_status(&self) -> Option<u32> {
        self.header("grpc-status")?.parse().ok()
    }

    /// The error code of a RST_STREAM or GOAWAY frame.
    pub fn error_code(&self) -> Option<u32> {
        let at = match self.kind {
            kind::RST_STREAM => 0,
            kind::GOAWAY => 4,
            _ => return None,
        };
        let bytes = self.payload.get(at..at + 4)?;
        Some(u32::from_be_bytes(bytes.try_into().ok()?))
    }
}

/// The bytes of one frame.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The client connection preface.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A SETTINGS frame with these (identifier, value) pairs.
pub fn settings(pairs: &[(u16, u32)]) -> Vec<u8> {
    let mut payload = Vec::new();
    for (id, value) in pairs {
        payload.extend_from_slice(&id.to_be_bytes());
        payload.extend_from_slice(&value.to_be_bytes());
    }
    frame(kind::SETTINGS, 0, 0, &payload)
}

/// A gRPC message: the 5-byte prefix and `body`.
pub fn grpc_message(body: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8];
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// An AppendEntriesRequest's protobuf encoding: term 1 and one log entry
/// of `data` (field 5, entries; the entry's field 4, data).
pub fn append_entries(data: &[u8]) -> Vec<u8> {
    let mut entry = vec![0x08, 0x01, 0x10, 0x01, 0x22];
    header_block::integer(&mut entry, data.len(), 7, 0);
    entry.extend_from_slice(data);
    let mut out = vec![0x10, 0x01, 0x2a];
    header_block::integer(&mut out, entry.len(), 7, 0);
    out.extend_from_slice(&entry);
    out
}

/// Send windows, as the peer's SETTINGS and WINDOW_UPDATEs say.
#[derive(Debug)]
struct Windows {
    connection: i64,
    initial_stream: i64,
    streams: HashMap<u32, i64>,
}

#[derive(Debug)]
struct Shared {
    windows: Mutex<Windows>,
    changed: Condvar,
    closed: AtomicBool,
    frames_in: AtomicU64,
    /// How the server ended the connection, as far as it was seen: its
    /// GOAWAY (error code, debug data) and the read that ended.
    ending: Mutex<Ending>,
}

/// What was seen of the end of a connection.
#[derive(Debug, Default)]
struct Ending {
    goaway: Option<(u32, String)>,
    read_error: Option<String>,
}

/// A raw HTTP/2 client connection.
pub struct RawConn {
    writer: Arc<Mutex<TcpStream>>,
    shared: Arc<Shared>,
    frames: Receiver<Frame>,
    reader: Option<JoinHandle<()>>,
    next_stream: u32,
}

impl RawConn {
    /// Connects to `addr` from `from` (an address of this machine; `None`:
    /// the system's choice) without sending anything.
    pub fn tcp(addr: SocketAddr, from: Option<IpAddr>) -> std::io::Result<TcpStream> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )?;
        if let Some(ip) = from {
            socket.bind(&SocketAddr::new(ip, 0).into())?;
        }
        socket.connect_timeout(&addr.into(), Duration::from_secs(5))?;
        let stream: TcpStream = socket.into();
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// Connects, sends the preface and SETTINGS `pairs`, and starts reading.
    pub fn connect(
        addr: SocketAddr,
        from: Option<IpAddr>,
        pairs: &[(u16, u32)],
    ) -> std::io::Result<RawConn> {
        let mut stream = Self::tcp(addr, from)?;
        // The preface goes out before the reader starts: the reader
        // acknowledges the server's SETTINGS, and an acknowledgement ahead
        // of the preface is a protocol error that fails the handshake.
        let mut hello = PREFACE.to_vec();
        hello.extend_from_slice(&settings(pairs));
        stream.write_all(&hello)?;
        RawConn::over(stream, true)
    }

    /// Reads frames from `stream` (acknowledging SETTINGS when `ack`: only
    /// once the preface was sent, or the server sees a protocol error).
    pub fn over(stream: TcpStream, ack: bool) -> std::io::Result<RawConn> {
        let writer = Arc::new(Mutex::new(stream.try_clone()?));
        let shared = Arc::new(Shared {
            windows: Mutex::new(Windows {
                connection: 65_535,
                initial_stream: 65_535,
                streams: HashMap::new(),
            }),
            changed: Condvar::new(),
            closed: AtomicBool::new(false),
            frames_in: AtomicU64::new(0),
            ending: Mutex::new(Ending::default()),
        });
        let (tx, frames) = channel();
        let reader = {
            let (writer, shared) = (writer.clone(), shared.clone());
            std::thread::spawn(move || read_frames(stream, writer, shared, tx, ack))
        };
        Ok(RawConn {
            writer,
            shared,
            frames,
            reader: Some(reader),
            next_stream: 1,
        })
    }

    /// Writes raw bytes. A failed write says what was seen of the
    /// connection's end (the server's GOAWAY, how reading ended).
    pub fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let mut writer = self.writer.lock().unwrap();
        writer
            .write_all(bytes)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{e}; {}", self.how_it_ended())))
    }

    /// What was seen of the end of the connection so far: the server's
    /// GOAWAY (error code and debug data) and how reading ended.
    pub fn how_it_ended(&self) -> String {
        let ending = self.shared.ending.lock().unwrap();
        let goaway = match &ending.goaway {
            Some((code, debug)) => format!("GOAWAY {code} {debug:?}"),
            None => "no GOAWAY".to_owned(),
        };
        let read = match &ending.read_error {
            Some(e) => format!("reading ended: {e}"),
            None if self.is_closed() => "reading ended".to_owned(),
            None => "still reading".to_owned(),
        };
        format!("{goaway}, {read}, {} frames read", self.frames_in())
    }

    /// A new client stream identifier.
    pub fn next_stream_id(&mut self) -> u32 {
        let id = self.next_stream;
        self.next_stream += 2;
        id
    }

    /// Opens a stream with a gRPC request head for `method` (END_HEADERS,
    /// without END_STREAM); returns its identifier.
    pub fn open(&mut self, method: &str) -> std::io::Result<u32> {
        let id = self.next_stream_id();
        let block = header_block::grpc_request(method);
        self.write(&frame(kind::HEADERS, kind::END_HEADERS, id, &block))?;
        Ok(id)
    }

    /// Sends `data` on `stream` as DATA frames of at most 16 KiB, within
    /// the send windows the server grants; gives up (returning what was
    /// sent) when no window opens for `patience`.
    pub fn send_data(
        &mut self,
        stream: u32,
        data: &[u8],
        end: bool,
        patience: Duration,
    ) -> std::io::Result<usize> {
        let mut sent = 0;
        while sent < data.len() || (end && sent == data.len() && data.is_empty()) {
            let want = (data.len() - sent).min(16 << 10);
            let grant = {
                let deadline = Instant::now() + patience;
                let mut windows = self.shared.windows.lock().unwrap();
                loop {
                    let stream_window = *windows
                        .streams
                        .get(&stream)
                        .unwrap_or(&windows.initial_stream);
                    let grant = windows.connection.min(stream_window).min(want as i64);
                    if grant > 0 || want == 0 {
                        let grant = grant.max(0);
                        windows.connection -= grant;
                        let initial = windows.initial_stream;
                        *windows.streams.entry(stream).or_insert(initial) -= grant;
                        break grant as usize;
                    }
                    let now = Instant::now();
                    if now >= deadline || self.shared.closed.load(Ordering::SeqCst) {
                        return Ok(sent);
                    }
                    windows = self
                        .shared
                        .changed
                        .wait_timeout(windows, deadline - now)
                        .unwrap()
                        .0;
                }
            };
            let last = sent + grant == data.len();
            let flags = if end && last { kind::END_STREAM } else { 0 };
            self.write(&frame(kind::DATA, flags, stream, &data[sent..sent + grant]))?;
            sent += grant;
            if data.is_empty() {
                break;
            }
        }
        Ok(sent)
    }

    /// The next frame the server sent, within `timeout`; `None` on timeout
    /// or once the connection is closed and every frame was read.
    pub fn next_frame(&self, timeout: Duration) -> Option<Frame> {
        self.frames.recv_timeout(timeout).ok()
    }

    /// Waits up to `timeout` for a frame `accept` takes; frames before it
    /// are dropped.
    pub fn wait_for(&self, timeout: Duration, accept: impl Fn(&Frame) -> bool) -> Option<Frame> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let frame = self.next_frame(left)?;
            if accept(&frame) {
                return Some(frame);
            }
        }
    }

    /// Waits up to `timeout` for the server to close the connection; true
    /// if it did. Frames still unread are dropped.
    pub fn wait_closed(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.shared.closed.load(Ordering::SeqCst) {
                while self.frames.try_recv().is_ok() {}
                return true;
            }
            let _ = self.next_frame(Duration::from_millis(20));
        }
        self.shared.closed.load(Ordering::SeqCst)
    }

    /// Whether the server closed the connection.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::SeqCst)
    }

    /// Frames read so far.
    pub fn frames_in(&self) -> u64 {
        self.shared.frames_in.load(Ordering::SeqCst)
    }
}

impl Drop for RawConn {
    fn drop(&mut self) {
        if let Ok(writer) = self.writer.lock() {
            let _ = writer.shutdown(std::net::Shutdown::Both);
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

fn read_frames(
    mut stream: TcpStream,
    writer: Arc<Mutex<TcpStream>>,
    shared: Arc<Shared>,
    frames: Sender<Frame>,
    ack: bool,
) {
    let mut header = [0u8; 9];
    let mut decoder = hpack::Decoder::new();
    // A header block not ended yet: its HEADERS frame and the bytes so far.
    let mut partial: Option<(Frame, Vec<u8>)> = None;
    loop {
        if let Err(e) = stream.read_exact(&mut header) {
            shared.ending.lock().unwrap().read_error = Some(e.to_string());
            break;
        }
        let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
        let mut payload = vec![0u8; len];
        if let Err(e) = stream.read_exact(&mut payload) {
            shared.ending.lock().unwrap().read_error = Some(e.to_string());
            break;
        }
        let mut frame = Frame {
            kind: header[3],
            flags: header[4],
            stream: u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff,
            payload,
            headers: Vec::new(),
        };
        shared.frames_in.fetch_add(1, Ordering::SeqCst);
        match frame.kind {
            kind::HEADERS => {
                let block = header_block_of(&frame);
                partial = Some((frame.clone(), block));
            }
            kind::CONTINUATION => {
                if let Some((_, block)) = &mut partial {
                    block.extend_from_slice(&frame.payload);
                }
            }
            _ => {}
        }
        if matches!(frame.kind, kind::HEADERS | kind::CONTINUATION)
            && frame.flags & kind::END_HEADERS != 0
        {
            if let Some((headers, block)) = partial.take() {
                frame = headers;
                frame.headers = decoder
                    .decode(&block)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(n, v)| {
                        let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
                        (text(n), text(v))
                    })
                    .collect();
            }
        } else if matches!(frame.kind, kind::HEADERS | kind::CONTINUATION) {
            continue;
        }
        match frame.kind {
            kind::SETTINGS if frame.flags & kind::ACK == 0 => {
                let mut windows = shared.windows.lock().unwrap();
                for pair in frame.payload.chunks_exact(6) {
                    let id = u16::from_be_bytes([pair[0], pair[1]]);
                    let value = u32::from_be_bytes([pair[2], pair[3], pair[4], pair[5]]) as i64;
                    if id == kind::INITIAL_WINDOW_SIZE {
                        let delta = value - windows.initial_stream;
                        windows.initial_stream = value;
                        windows.streams.values_mut().for_each(|w| *w += delta);
                    }
                }
                drop(windows);
                shared.changed.notify_all();
                if ack {
                    let _ = writer.lock().unwrap().write_all(&crate::frame(
                        kind::SETTINGS,
                        kind::ACK,
                        0,
                        &[],
                    ));
                }
            }
            kind::GOAWAY if frame.payload.len() >= 8 => {
                let code = u32::from_be_bytes(frame.payload[4..8].try_into().unwrap());
                let debug = String::from_utf8_lossy(&frame.payload[8..]).into_owned();
                shared.ending.lock().unwrap().goaway = Some((code, debug));
            }
            kind::WINDOW_UPDATE if frame.payload.len() == 4 => {
                let bytes: [u8; 4] = frame.payload[..4].try_into().unwrap();
                let increment = (u32::from_be_bytes(bytes) & 0x7fff_ffff) as i64;
                let mut windows = shared.windows.lock().unwrap();
                if frame.stream == 0 {
                    windows.connection += increment;
                } else {
                    let initial = windows.initial_stream;
                    *windows.streams.entry(frame.stream).or_insert(initial) += increment;
                }
                drop(windows);
                shared.changed.notify_all();
            }
            _ => {}
        }
        if frames.send(frame).is_err() {
            break;
        }
    }
    shared.closed.store(true, Ordering::SeqCst);
    shared.changed.notify_all();
}

/// The header block fragment of a HEADERS frame (without padding and
/// priority fields).
fn header_block_of(frame: &Frame) -> Vec<u8> {
    const PADDED: u8 = 0x8;
    const PRIORITY: u8 = 0x20;
    let mut payload = &frame.payload[..];
    let mut pad = 0;
    if frame.flags & PADDED != 0 && !payload.is_empty() {
        pad = payload[0] as usize;
        payload = &payload[1..];
    }
    if frame.flags & PRIORITY != 0 && payload.len() >= 5 {
        payload = &payload[5..];
    }
    payload[..payload.len().saturating_sub(pad)].to_vec()
}

/// The node under attack: `hostile-target` as a child process, killed when
/// this is dropped.
pub struct Target {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Target {
    /// Starts `binary` (the `hostile-target` executable) with `args`, and
    /// waits for its `listening on ADDR` line.
    pub fn start(binary: &str, args: &[&str]) -> Target {
        let mut child = Command::new(binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start hostile-target");
        let stdout = child.stdout.take().expect("its stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read its first line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("hostile-target said {line:?}"))
            .parse()
            .expect("an address");
        Target { child, addr }
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The process's peak resident set size so far (Linux: `VmHWM`), in
    /// bytes; 0 where the system does not say.
    pub fn peak_rss(&self) -> u64 {
        self.status_kib("VmHWM:") * 1024
    }

    /// The process's resident set size now (Linux: `VmRSS`), in bytes.
    pub fn rss(&self) -> u64 {
        self.status_kib("VmRSS:") * 1024
    }

    fn status_kib(&self, field: &str) -> u64 {
        let path = format!("/proc/{}/status", self.child.id());
        let status = std::fs::read_to_string(path).unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a [`LegitCaller`] saw.
#[derive(Debug, Clone, Default)]
pub struct CallerReport {
    /// Calls answered.
    pub answered: u64,
    /// Calls that failed, with the first errors.
    pub failed: u64,
    /// The first few errors.
    pub errors: Vec<String>,
    /// The slowest call.
    pub slowest: Duration,
}

/// A well-behaved peer that calls RequestVote on the target every 20 ms
/// from its own thread (with the transport's defaults, from 127.0.0.1),
/// until it is stopped.
pub struct LegitCaller {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<CallerReport>>,
}

impl LegitCaller {
    /// Starts calling `addr`; returns once the first call was answered.
    pub fn start(addr: SocketAddr) -> LegitCaller {
        use raft_grpc_transport::message::RequestVoteRequest;
        use raft_grpc_transport_smol::{Config, GrpcTransport};

        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready) = channel();
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                futures_lite::future::block_on(async move {
                    let client = GrpcTransport::builder("legit", Config::default()).build();
                    let target = addr.to_string();
                    let mut report = CallerReport::default();
                    let mut first = true;
                    while !stop.load(Ordering::SeqCst) {
                        let start = Instant::now();
                        let request = RequestVoteRequest {
                            term: 7,
                            ..Default::default()
                        };
                        match client.request_vote(&target, request).await {
                            Ok(_) => report.answered += 1,
                            Err(e) => {
                                report.failed += 1;
                                if report.errors.len() < 5 {
                                    report.errors.push(e.to_string());
                                }
                            }
                        }
                        if first {
                            first = false;
                            let _ = ready_tx.send(());
                        } else {
                            report.slowest = report.slowest.max(start.elapsed());
                        }
                        async_sleep(Duration::from_millis(20)).await;
                    }
                    report
                })
            })
        };
        ready
            .recv_timeout(Duration::from_secs(10))
            .expect("the legitimate caller's first call");
        LegitCaller {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops calling; what it saw.
    pub fn stop(mut self) -> CallerReport {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .expect("stopped once")
            .join()
            .expect("the caller's thread")
    }
}

impl Drop for LegitCaller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

async fn async_sleep(duration: Duration) {
    smol::Timer::after(duration).await;
}
