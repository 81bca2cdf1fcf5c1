//! `tcp-floor`: the floor — a plain TCP socket on loopback (TCP_NODELAY on
//! both ends), blocking std I/O, no RPC machinery at all.
//!
//! The client writes the payload with a 4-byte big-endian length in front
//! (one `write_all` of a buffer built once); the server reads the whole
//! message into a reused buffer and answers with a 16-byte length-prefixed
//! reply (about the size of an AppendEntries response). The reply is small
//! on purpose: every RPC system here answers an AppendEntries with a small
//! response, so echoing the payload back would double the bytes moved and
//! make the "floor" slower than the systems above it for large payloads.
//!
//! Unary: one message, one reply, sequentially. Pipeline: a writer thread
//! keeps at most [`WINDOW`] messages unanswered while the reader takes the
//! replies; both ends batch their writes the way an RPC library does (the
//! client's messages in a 64 KiB buffer, flushed when it fills or the
//! window does; the server's replies flushed when no more requests are
//! waiting), so the floor is not held back by one syscall per small
//! message.

use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc::{TrySendError, sync_channel};
use std::thread;
use std::time::Instant;

use super::{WINDOW, latency_report};
use crate::protocol::{ClientArgs, ClientReport, Scenario};

const REPLY_LEN: usize = 16;

/// Serves until stdin closes.
pub fn serve(listen: &str) -> Result<(), String> {
    let listener = TcpListener::bind(listen).map_err(|e| format!("tcp-floor: bind: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("tcp-floor: {e}"))?;
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || {
                let _ = serve_connection(stream);
            });
        }
    });
    super::announce(&addr.to_string());
    super::wait_for_stdin_eof();
    Ok(())
}

fn serve_connection(stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut writer = BufWriter::with_capacity(64 << 10, stream.try_clone()?);
    let mut reader = BufReader::with_capacity(256 << 10, stream);
    let mut reply = [0u8; 4 + REPLY_LEN];
    reply[..4].copy_from_slice(&(REPLY_LEN as u32).to_be_bytes());
    let mut buf = Vec::new();
    loop {
        let mut len = [0u8; 4];
        reader.read_exact(&mut len)?;
        buf.resize(u32::from_be_bytes(len) as usize, 0);
        reader.read_exact(&mut buf)?;
        writer.write_all(&reply)?;
        // Replies to requests that arrived together leave together.
        if reader.buffer().is_empty() {
            writer.flush()?;
        }
    }
}

fn read_reply(stream: &mut impl Read) -> std::io::Result<()> {
    let mut reply = [0u8; 4 + REPLY_LEN];
    stream.read_exact(&mut reply)
}

/// Runs one measurement (unary or pipeline).
pub fn client(args: &ClientArgs) -> Result<ClientReport, String> {
    let io = |e: std::io::Error| format!("tcp-floor: {e}");
    let stream = TcpStream::connect(&args.target).map_err(io)?;
    stream.set_nodelay(true).map_err(io)?;
    let mut writer = stream.try_clone().map_err(io)?;
    let mut stream = BufReader::with_capacity(64 << 10, stream);
    let mut message = (args.payload as u32).to_be_bytes().to_vec();
    message.resize(4 + args.payload as usize, 0x5a);
    match args.scenario {
        Scenario::Unary => {
            for _ in 0..args.warmup {
                writer.write_all(&message).map_err(io)?;
                read_reply(&mut stream).map_err(io)?;
            }
            let mut latencies = Vec::with_capacity(args.ops as usize);
            args.measuring_starts();
            let start = Instant::now();
            for _ in 0..args.ops {
                let at = Instant::now();
                writer.write_all(&message).map_err(io)?;
                read_reply(&mut stream).map_err(io)?;
                latencies.push(super::nanos(at.elapsed()));
            }
            let elapsed = start.elapsed();
            args.measuring_ends();
            Ok(latency_report(latencies, elapsed, args.ops * args.payload))
        }
        Scenario::Pipeline => {
            let mut writer = BufWriter::with_capacity(64 << 10, writer);
            let mut pipelined = |n: u64| {
                // One token per unanswered message: the writer blocks when
                // WINDOW are out.
                let (tokens, returned) = sync_channel::<()>(WINDOW as usize);
                thread::scope(|scope| {
                    let message = &message;
                    let writer = &mut writer;
                    let sent = scope.spawn(move || {
                        for _ in 0..n {
                            match tokens.try_send(()) {
                                Ok(()) => {}
                                // The window is full: send what is
                                // buffered, then wait for a reply.
                                Err(TrySendError::Full(())) => {
                                    writer.flush()?;
                                    if tokens.send(()).is_err() {
                                        break;
                                    }
                                }
                                Err(TrySendError::Disconnected(())) => break,
                            }
                            writer.write_all(message)?;
                        }
                        writer.flush()
                    });
                    for _ in 0..n {
                        read_reply(&mut stream)?;
                        let _ = returned.recv();
                    }
                    drop(returned);
                    sent.join().unwrap_or(Ok(()))
                })
                .map_err(io)
            };
            pipelined(args.warmup)?;
            args.measuring_starts();
            let start = Instant::now();
            pipelined(args.ops)?;
            let elapsed = start.elapsed();
            args.measuring_ends();
            Ok(ClientReport {
                ops: args.ops,
                elapsed_ns: super::nanos(elapsed),
                bytes: args.ops * args.payload,
                ..Default::default()
            })
        }
        other => Err(format!("tcp-floor: no {} scenario", other.name())),
    }
}
