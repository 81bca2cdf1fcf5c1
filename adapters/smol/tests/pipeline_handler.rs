//! `GrpcTransport::set_pipeline_handler`: each AppendEntries pipeline stream
//! a peer opens arrives as its own `IncomingPipeline`, its appends in order,
//! apart from the consumer queue; answers given out of order go back in
//! order; an error answer ends the stream with its status; `None` restores
//! the consumer.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_lite::future::{self, block_on};
use raft_grpc_transport::message::*;
use raft_grpc_transport::{Code, Status};
use raft_grpc_transport_smol::{Config, GrpcTransport, IncomingPipeline, Rpc};

/// The (term, index) of each append of a stream, as they arrived.
type Arrived = Vec<(u64, u64)>;

fn append(term: u64, index: u64) -> AppendEntriesRequest {
    AppendEntriesRequest {
        header: RpcHeader::new(3, format!("leader-{term}"), "127.0.0.1:1"),
        term,
        prev_log_entry: index - 1,
        entries: vec![Log::command(index, term, Bytes::from_static(b"x"))],
        ..Default::default()
    }
}

fn answer(rpc: Rpc) {
    let RaftRequest::AppendEntries(request) = &rpc.request else {
        panic!("not an append: {:?}", rpc.request)
    };
    let response = AppendEntriesResponse {
        term: request.term,
        last_log: request.entries.last().map_or(0, |e| e.index),
        success: true,
        ..Default::default()
    };
    rpc.respond(Ok(RaftResponse::AppendEntries(response)));
}

/// A server whose pipeline handler puts every stream on `streams`.
async fn server() -> (GrpcTransport, async_channel::Receiver<IncomingPipeline>) {
    let server = GrpcTransport::bind("127.0.0.1:0", Config::default())
        .await
        .unwrap();
    let (tx, rx) = async_channel::unbounded();
    server.set_pipeline_handler(Some(Arc::new(move |incoming| {
        tx.try_send(incoming).unwrap();
    })));
    (server, rx)
}

#[test]
fn each_stream_arrives_apart_in_order_and_answers_return_in_order() {
    block_on(async {
        let (server, streams) = server().await;
        // Unary calls still reach the consumer.
        let consumer = server.consumer();
        smol::spawn(async move {
            while let Some(rpc) = consumer.recv().await {
                answer(rpc);
            }
        })
        .detach();
        // Each stream: take its appends in batches of 10 and answer each
        // batch backwards; record what arrived.
        let seen: Arc<Mutex<Vec<Arrived>>> = Arc::default();
        let record = seen.clone();
        smol::spawn(async move {
            while let Ok(incoming) = streams.recv().await {
                let record = record.clone();
                smol::spawn(async move {
                    let mut arrived = Vec::new();
                    let mut batch = Vec::new();
                    while let Some(rpc) = incoming.recv().await {
                        if let RaftRequest::AppendEntries(r) = &rpc.request {
                            arrived.push((r.term, r.entries[0].index));
                        }
                        batch.push(rpc);
                        if batch.len() == 10 {
                            batch.drain(..).rev().for_each(answer);
                        }
                    }
                    record.lock().unwrap().push(arrived);
                })
                .detach();
            }
        })
        .detach();

        let client = GrpcTransport::builder("client", Config::default()).build();
        let target = server.local_addr().to_owned();
        let unary = client.append_entries(&target, append(9, 1)).await.unwrap();
        assert_eq!(unary.last_log, 1);

        let count = 500u64;
        let run = |term: u64| {
            let client = client.clone();
            let target = target.clone();
            async move {
                let pipeline = client.append_entries_pipeline(&target).await.unwrap();
                let send = async {
                    for i in 1..=count {
                        pipeline.append(&append(term, i)).await.unwrap();
                    }
                };
                let receive = async {
                    for i in 0..count {
                        let (seq, result) = pipeline.next().await.unwrap();
                        assert_eq!(seq, i);
                        let response = result.unwrap();
                        assert_eq!((response.term, response.last_log), (term, i + 1));
                    }
                };
                future::zip(send, receive).await;
            }
        };
        future::zip(run(1), run(2)).await;

        // Both streams ended when their pipelines were dropped.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while seen.lock().unwrap().len() < 2 {
            assert!(std::time::Instant::now() < deadline, "streams never ended");
            async_io::Timer::after(Duration::from_millis(10)).await;
        }
        let mut seen = seen.lock().unwrap().clone();
        seen.sort();
        for (k, term) in [1u64, 2].into_iter().enumerate() {
            let expected: Vec<(u64, u64)> = (1..=count).map(|i| (term, i)).collect();
            assert_eq!(seen[k], expected, "stream of term {term}");
        }
        client.close().await;
        server.close().await;
    });
}

#[test]
fn an_error_answer_ends_the_stream_with_its_status() {
    block_on(async {
        let (server, streams) = server().await;
        let (ended_tx, ended) = async_channel::bounded::<()>(1);
        let handler = smol::spawn(async move {
            let incoming = streams.recv().await.unwrap();
            let first = incoming.recv().await.unwrap();
            let second = incoming.recv().await.unwrap();
            second.respond(Err(Status::new(Code::FailedPrecondition, "no thanks")));
            answer(first);
            // Once the caller has heard the end of the stream, the third
            // append, left behind, is not handed out.
            let _ = ended.recv().await;
            incoming.recv().await.is_none()
        });
        let client = GrpcTransport::builder("client", Config::default()).build();
        let pipeline = client
            .append_entries_pipeline(server.local_addr())
            .await
            .unwrap();
        for i in 1..=3 {
            pipeline.append(&append(1, i)).await.unwrap();
        }
        let (_, first) = pipeline.next().await.unwrap();
        assert_eq!(first.unwrap().last_log, 1);
        let (_, second) = pipeline.next().await.unwrap();
        let status = second.unwrap_err().status();
        assert_eq!(
            (status.code(), status.message()),
            (Code::FailedPrecondition, "no thanks")
        );
        let (_, third) = pipeline.next().await.unwrap();
        assert_eq!(third.unwrap_err().code(), Code::FailedPrecondition);
        ended_tx.send(()).await.unwrap();
        assert!(handler.await, "an append of an ended stream was handed out");
        client.close().await;
        server.close().await;
    });
}

#[test]
fn without_a_handler_pipelined_appends_reach_the_consumer() {
    block_on(async {
        let (server, streams) = server().await;
        server.set_pipeline_handler(None);
        let consumer = server.consumer();
        smol::spawn(async move {
            while let Some(rpc) = consumer.recv().await {
                answer(rpc);
            }
        })
        .detach();
        let client = GrpcTransport::builder("client", Config::default()).build();
        let pipeline = client
            .append_entries_pipeline(server.local_addr())
            .await
            .unwrap();
        pipeline.append(&append(1, 1)).await.unwrap();
        let (_, result) = pipeline.next().await.unwrap();
        assert_eq!(result.unwrap().last_log, 1);
        assert!(streams.try_recv().is_err(), "the handler was still called");
        client.close().await;
        server.close().await;
    });
}

#[test]
fn closing_the_transport_ends_an_incoming_pipeline() {
    block_on(async {
        let (server, streams) = server().await;
        let client = GrpcTransport::builder("client", Config::default()).build();
        let pipeline = client
            .append_entries_pipeline(server.local_addr())
            .await
            .unwrap();
        pipeline.append(&append(1, 1)).await.unwrap();
        let incoming = streams.recv().await.unwrap();
        // Taken but never answered: close still ends the stream and the
        // caller hears UNAVAILABLE.
        let _held = incoming.recv().await.unwrap();
        let closed = future::or(
            async {
                server.close().await;
                assert!(incoming.recv().await.is_none());
                true
            },
            async {
                async_io::Timer::after(Duration::from_secs(10)).await;
                false
            },
        )
        .await;
        assert!(closed, "close hung");
        let (_, result) = pipeline.next().await.unwrap();
        assert_eq!(result.unwrap_err().code(), Code::Unavailable);
        client.close().await;
    });
}
