//! Client keepalive PINGs follow gRPC's rules: none on a connection without
//! calls in flight, one per interval while calls are open. (grpc-go servers
//! answer PINGs on an idle connection with GOAWAY `too_many_pings`; the
//! interop tests found it.)
//!
//! A TCP proxy between client and server counts the PING frames the client
//! sends, by parsing the HTTP/2 frames of that direction.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_lite::future::block_on;
use raft_grpc_transport::message::*;
use raft_grpc_transport_smol::{Config, GrpcTransport};

/// Forwards one connection to `target` and counts client PINGs (not ACKs).
fn counting_proxy(target: String) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let pings = Arc::new(AtomicUsize::new(0));
    let counted = pings.clone();
    std::thread::spawn(move || {
        let (mut client, _) = listener.accept().unwrap();
        let mut server = TcpStream::connect(target).unwrap();
        let (mut client_r, mut server_w) =
            (client.try_clone().unwrap(), server.try_clone().unwrap());
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut server, &mut client);
        });
        // Client to server: the 24-byte preface, then frames.
        let mut preface = [0u8; 24];
        client_r.read_exact(&mut preface).unwrap();
        server_w.write_all(&preface).unwrap();
        let mut head = [0u8; 9];
        while client_r.read_exact(&mut head).is_ok() {
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let mut payload = vec![0; len];
            if client_r.read_exact(&mut payload).is_err() {
                break;
            }
            // PING is type 6; flag 0x1 is ACK.
            if head[3] == 6 && head[4] & 1 == 0 {
                counted.fetch_add(1, Ordering::SeqCst);
            }
            if server_w.write_all(&head).is_err() || server_w.write_all(&payload).is_err() {
                break;
            }
        }
    });
    (addr, pings)
}

#[test]
fn keepalive_pings_only_while_calls_are_in_flight() {
    block_on(async {
        let server = GrpcTransport::bind("127.0.0.1:0", Config::default())
            .await
            .unwrap();
        // The server holds every RPC for 600 ms before answering.
        let consumer = server.consumer();
        let header = RpcHeader::new(3, "server", server.local_addr().to_owned());
        smol::spawn(async move {
            while let Some(rpc) = consumer.recv().await {
                smol::Timer::after(Duration::from_millis(600)).await;
                raft_grpc_transport_api::reference::answer(rpc, header.clone()).await;
            }
        })
        .detach();
        let (proxy, pings) = counting_proxy(server.local_addr().to_owned());
        let client = GrpcTransport::builder(
            "client",
            Config::default().with_keepalive_interval(Some(Duration::from_millis(50))),
        )
        .build();
        let vote = || RequestVoteRequest {
            term: 1,
            ..Default::default()
        };
        // The connect's PING, then ~12 intervals during the call.
        client.request_vote(&proxy, vote()).await.unwrap();
        let during_call = pings.load(Ordering::SeqCst);
        assert!(
            during_call >= 4,
            "expected keepalive PINGs during a 600 ms call, saw {during_call}"
        );
        // No call in flight: no PING, however many intervals pass.
        smol::Timer::after(Duration::from_millis(600)).await;
        let idle = pings.load(Ordering::SeqCst) - during_call;
        assert!(idle <= 1, "{idle} PINGs on a connection without calls");
        client.close().await;
    });
}
