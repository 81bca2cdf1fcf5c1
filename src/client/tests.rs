//! Unit tests of the [`ClientEndpoint`]: connections (handshake PING,
//! keepalive, connect deadline, GOAWAY), how streams are opened, and
//! outcomes, against a [`ServerEndpoint`] over an ideal in-memory link.

use std::time::{Duration, Instant};

use super::*;
use crate::call::ServerTransmit;
use crate::message::*;
use crate::server::{ServerConfig, ServerEndpoint, ServerEvent, ServerOutput, StreamId};

const PEER: &str = "10.0.0.2:7000";

/// A client endpoint and a server endpoint joined by an ideal link: every
/// connect succeeds at once, frames arrive at once, windows never run out.
/// The server answers with the reference responder when `answer` is on.
struct Link {
    client: ClientEndpoint,
    server: ServerEndpoint,
    now: Instant,
    /// Client connection → server connection.
    conns: HashMap<ConnId, ConnId>,
    /// Client call ↔ server stream.
    streams: HashMap<CallId, StreamId>,
    calls: HashMap<StreamId, CallId>,
    /// What the client asked for, in order.
    outputs: Vec<String>,
    events: Vec<ClientEvent>,
    answer: bool,
    /// Connects succeed (else they are left pending).
    accept: bool,
    /// PINGs are answered.
    pong: bool,
    pings: usize,
    /// The requests the server's consumer took, in order.
    served: Vec<RaftRequest>,
}

impl Link {
    fn new(config: ClientConfig) -> Link {
        Link::with_server(config, ServerConfig::default())
    }

    fn with_server(config: ClientConfig, server: ServerConfig) -> Link {
        Link {
            client: ClientEndpoint::new(config),
            server: ServerEndpoint::new(server),
            now: Instant::now(),
            conns: HashMap::new(),
            streams: HashMap::new(),
            calls: HashMap::new(),
            outputs: Vec::new(),
            events: Vec::new(),
            answer: true,
            accept: true,
            pong: true,
            pings: 0,
            served: Vec::new(),
        }
    }

    /// Runs both endpoints until neither has anything left to do.
    fn run(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(output) = self.client.poll_output() {
                progressed = true;
                self.client_output(output);
            }
            while let Some(event) = self.client.poll_event() {
                progressed = true;
                self.events.push(event);
            }
            while let Some(output) = self.server.poll_output() {
                progressed = true;
                self.server_output(output);
            }
            while let Some(event) = self.server.poll_event() {
                progressed = true;
                if let ServerEvent::Heartbeat { id, request, .. } = event {
                    let response =
                        crate::reference::append_entries_response(&request, RpcHeader::default());
                    let _ = self.server.respond(
                        id,
                        Ok(RaftResponse::AppendEntries(response)),
                        self.now,
                    );
                }
            }
            if self.answer {
                while let Some(rpc) = self.server.poll_rpc(self.now) {
                    progressed = true;
                    let response =
                        crate::reference::response(&rpc.request, RpcHeader::default(), None);
                    self.served.push(rpc.request);
                    let _ = self.server.respond(rpc.id, Ok(response), self.now);
                }
            }
            if !progressed {
                return;
            }
        }
    }

    fn client_output(&mut self, output: ClientOutput) {
        let now = self.now;
        match output {
            ClientOutput::Connect { conn, peer } => {
                self.outputs.push(format!("connect {peer}"));
                if self.accept {
                    let server_conn = self.server.handle_connection(now);
                    self.server.handle_handshake_done(server_conn, now);
                    self.conns.insert(conn, server_conn);
                    self.client.handle_connected(conn, now);
                }
            }
            ClientOutput::Close { conn } => {
                self.outputs.push("close".into());
                if let Some(server_conn) = self.conns.remove(&conn) {
                    self.server
                        .handle_connection_lost(server_conn, "closed", now);
                }
            }
            ClientOutput::Ping { conn } => {
                self.pings += 1;
                self.outputs.push("ping".into());
                if self.pong {
                    self.client.handle_ping_ack(conn, now);
                }
            }
            ClientOutput::OpenStream {
                conn,
                call,
                method,
                request,
                send_now,
            } => {
                self.outputs
                    .push(format!("open {} send_now={send_now}", method.name()));
                let (parts, ()) = request.into_parts();
                let stream = self
                    .server
                    .handle_request_head(self.conns[&conn], &parts, now);
                self.streams.insert(call, stream);
                self.calls.insert(stream, call);
                self.client_transmit(call);
            }
            ClientOutput::Transmit { call, .. } => self.client_transmit(call),
            ClientOutput::ReleaseCapacity { .. } => {}
        }
    }

    fn client_transmit(&mut self, call: CallId) {
        let now = self.now;
        while let Some(transmit) = self.client.poll_transmit(call, usize::MAX, now) {
            let Some(stream) = self.streams.get(&call).copied() else {
                continue;
            };
            match transmit {
                ClientTransmit::Data {
                    data,
                    end_of_stream,
                } => {
                    self.server.handle_data(stream, data, now);
                    if end_of_stream {
                        self.server.handle_end_of_stream(stream, now);
                    }
                }
                ClientTransmit::Reset(code) => self.server.handle_reset(stream, code, now),
            }
        }
    }

    fn server_output(&mut self, output: ServerOutput) {
        let now = self.now;
        if let ServerOutput::Transmit { stream, .. } = output {
            let Some(call) = self.calls.get(&stream).copied() else {
                return;
            };
            while let Some(transmit) = self.server.poll_transmit(stream, usize::MAX, now) {
                match transmit {
                    ServerTransmit::Head {
                        head,
                        end_of_stream,
                    } => self.client.handle_response_head(
                        call,
                        &head.into_parts().0,
                        end_of_stream,
                        now,
                    ),
                    ServerTransmit::Data(data) => self.client.handle_response_data(call, data, now),
                    ServerTransmit::Trailers(trailers) => {
                        self.client.handle_response_trailers(call, &trailers, now)
                    }
                }
            }
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.client.handle_timeout(self.now);
        self.server.handle_timeout(self.now);
        self.run();
    }

    fn vote(&mut self) -> CallId {
        let now = self.now;
        let id = self.client.start_rpc(
            PEER,
            OutgoingRpc::RequestVote(RequestVoteRequest {
                term: 3,
                ..Default::default()
            }),
            now,
        );
        self.run();
        id
    }

    fn completed(&self, call: CallId) -> Vec<&Result<RaftResponse, TransportError>> {
        self.events
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Completed { call: c, result } if *c == call => Some(result),
                _ => None,
            })
            .collect()
    }
}

fn append(index: u64) -> AppendEntriesRequest {
    AppendEntriesRequest {
        header: RpcHeader::new(3, "leader", "10.0.0.1:7000"),
        term: 1,
        prev_log_entry: index - 1,
        entries: vec![Log::command(index, 1, Bytes::from_static(b"x"))],
        ..Default::default()
    }
}

#[test]
fn a_connection_carries_streams_only_after_its_handshake_ping() {
    let mut link = Link::new(ClientConfig::default());
    link.pong = false;
    let call = link.vote();
    assert_eq!(
        link.outputs,
        vec![format!("connect {PEER}"), "ping".to_string()]
    );
    assert!(
        link.completed(call).is_empty(),
        "waits for the PING's answer"
    );
    let conn = *link.conns.keys().next().unwrap();
    link.client.handle_max_streams(conn, Some(100), link.now);
    link.client.handle_ping_ack(conn, link.now);
    link.run();
    // A unary request is handed over whole at once.
    let open = &link.outputs[2];
    assert!(open.starts_with("open RequestVote send_now="), "{open}");
    assert_ne!(open, "open RequestVote send_now=0");
    assert!(matches!(
        link.completed(call)[..],
        [Ok(RaftResponse::RequestVote(_))]
    ));
}

#[test]
fn a_connect_that_does_not_finish_in_time_fails_its_calls_fast() {
    let mut link = Link::new(ClientConfig::default());
    link.accept = false;
    let call = link.vote();
    let timeout = ClientConfig::default().pool.connect_timeout;
    link.advance(timeout);
    assert!(
        link.outputs.contains(&"close".to_string()),
        "{:?}",
        link.outputs
    );
    let [Err(TransportError::Status(status))] = &link.completed(call)[..] else {
        panic!("{:?}", link.events)
    };
    assert_eq!(status.code(), Code::Unavailable);
    // Backing off: the next call fails at once, without connecting.
    let connects = link.outputs.len();
    let next = link.vote();
    assert!(matches!(
        link.completed(next)[..],
        [Err(TransportError::Status(_))]
    ));
    assert_eq!(link.outputs.len(), connects);
}

#[test]
fn a_connection_lost_before_its_handshake_ping_is_a_failed_connect() {
    let mut link = Link::new(ClientConfig::default());
    link.pong = false;
    let call = link.vote();
    let conn = *link.conns.keys().next().unwrap();
    link.client
        .handle_connection_lost(conn, "the peer closed the connection", link.now);
    link.run();
    let [Err(e)] = &link.completed(call)[..] else {
        panic!()
    };
    assert!(e.to_string().contains("connecting to 10.0.0.2:7000"), "{e}");
    assert!(matches!(
        link.client.pool().slot_state(PEER, 0),
        Some(crate::pool::SlotState::Failed { .. })
    ));
}

#[test]
fn keepalive_pings_while_calls_are_in_flight_and_a_dead_peer_is_detected() {
    let interval = Duration::from_secs(10);
    let config = ClientConfig {
        keepalive: KeepaliveConfig {
            interval: Some(interval),
            timeout: Duration::from_secs(2),
        },
        rpc_timeout: Duration::from_secs(600),
        ..ClientConfig::default()
    };
    let mut link = Link::new(config);
    link.answer = false;
    let call = link.vote();
    assert_eq!(link.pings, 1, "the handshake PING");
    // The call is in flight: one PING per interval.
    for _ in 0..3 {
        link.advance(interval);
    }
    assert_eq!(link.pings, 4);
    // The peer stops answering PINGs: the connection is declared dead.
    link.pong = false;
    link.advance(interval);
    link.advance(Duration::from_secs(2));
    let [Err(e)] = &link.completed(call)[..] else {
        panic!("{:?}", link.events)
    };
    assert!(
        e.to_string()
            .contains("keepalive to 10.0.0.2:7000 timed out"),
        "{e}"
    );
    assert!(
        link.outputs
            .ends_with(&["ping".to_string(), "close".to_string()])
    );
}

#[test]
fn no_keepalive_ping_on_an_idle_connection() {
    let interval = Duration::from_secs(10);
    let config = ClientConfig {
        keepalive: KeepaliveConfig {
            interval: Some(interval),
            timeout: Duration::from_secs(2),
        },
        ..ClientConfig::default()
    };
    let mut link = Link::new(config);
    let call = link.vote();
    assert_eq!(link.completed(call).len(), 1);
    for _ in 0..10 {
        link.advance(interval);
    }
    assert_eq!(link.pings, 1, "only the handshake PING");
    assert_eq!(
        link.client.poll_timeout(),
        None,
        "no timer on an idle connection"
    );
}

#[test]
fn a_peer_that_asks_for_calm_gets_fewer_pings() {
    let interval = Duration::from_secs(10);
    let config = ClientConfig {
        keepalive: KeepaliveConfig {
            interval: Some(interval),
            timeout: Duration::from_secs(2),
        },
        ..ClientConfig::default()
    };
    let mut link = Link::new(ClientConfig {
        rpc_timeout: Duration::from_secs(600),
        ..config
    });
    link.answer = false;
    link.vote();
    let conn = *link.conns.keys().next().unwrap();
    link.client.handle_goaway(conn, ENHANCE_YOUR_CALM, link.now);
    link.run();
    // A new connection to the same peer: its keepalive is twice as slow.
    link.vote();
    let pings = link.pings;
    link.advance(interval);
    assert_eq!(link.pings, pings, "no PING after one configured interval");
    // Both connections (the draining one too) ping at twice the interval.
    link.advance(interval);
    assert_eq!(link.pings, pings + 2);
}

#[test]
fn outcomes_are_typed() {
    let mut link = Link::new(ClientConfig::default());
    link.answer = false;
    let unary = link.vote();
    let now = link.now;
    let pipeline = link.client.open_pipeline(PEER, now);
    link.run();
    let seq = link.client.append(pipeline, &append(1), now).unwrap();
    let closed = link.client.open_pipeline(PEER, now);
    link.run();
    let in_flight = link.client.append(closed, &append(1), now).unwrap();
    link.client.close_pipeline(closed, now);
    link.run();
    assert!(link.events.contains(&ClientEvent::Appended {
        pipeline: closed,
        seq: in_flight,
        result: Err(TransportError::PipelineShutdown)
    }));
    assert!(link.events.contains(&ClientEvent::PipelineClosed {
        pipeline: closed,
        error: TransportError::PipelineShutdown
    }));
    // The endpoint forgot it: the PipelineClosed event was its last word.
    assert_eq!(
        link.client.append(closed, &append(2), now),
        Err(AppendError::UnknownPipeline)
    );
    link.client.close(now);
    link.run();
    assert_eq!(link.completed(unary), vec![&Err(TransportError::Shutdown)]);
    assert!(link.events.contains(&ClientEvent::Appended {
        pipeline,
        seq,
        result: Err(TransportError::PipelineShutdown)
    }));
    let later = link.vote();
    assert_eq!(link.completed(later), vec![&Err(TransportError::Shutdown)]);
}

#[test]
fn a_pipeline_opens_without_eager_data_and_joins_small_appends() {
    let mut link = Link::new(ClientConfig::default());
    link.answer = false;
    let now = link.now;
    let pipeline = link.client.open_pipeline(PEER, now);
    link.run();
    assert!(
        link.outputs
            .contains(&"open AppendEntriesPipeline send_now=0".to_string())
    );
    assert!(
        link.events
            .contains(&ClientEvent::PipelineOpened { pipeline })
    );
    for i in 1..=10 {
        link.client.append(pipeline, &append(i), now).unwrap();
    }
    // All ten come out of one poll_transmit, joined.
    let Some(ClientTransmit::Data {
        data,
        end_of_stream: false,
    }) = link.client.poll_transmit(pipeline, usize::MAX, now)
    else {
        panic!()
    };
    let one = crate::framing::MessageEncoder::default()
        .encode(&append(1))
        .unwrap()
        .len();
    assert!(data.len() >= 10 * one - 10, "{} bytes", data.len());
    assert_eq!(link.client.poll_transmit(pipeline, usize::MAX, now), None);
}

#[test]
fn a_refused_stream_fails_with_unavailable() {
    let mut link = Link::new(ClientConfig::default());
    link.answer = false;
    let call = link.vote();
    link.client.handle_stream_refused(call, link.now);
    link.run();
    let [Err(TransportError::Status(status))] = &link.completed(call)[..] else {
        panic!()
    };
    assert_eq!(status.code(), Code::Unavailable);
}

#[test]
fn a_lost_connection_fails_its_calls_once_and_the_next_call_reconnects() {
    let mut link = Link::new(ClientConfig::default());
    link.answer = false;
    let call = link.vote();
    let conn = *link.conns.keys().next().unwrap();
    link.client
        .handle_connection_lost(conn, "broken pipe", link.now);
    link.run();
    let [Err(e)] = &link.completed(call)[..] else {
        panic!()
    };
    assert!(
        e.to_string()
            .contains("connection to 10.0.0.2:7000 lost: broken pipe"),
        "{e}"
    );
    link.answer = true;
    let next = link.vote();
    assert_eq!(
        link.outputs
            .iter()
            .filter(|o| o.starts_with("connect"))
            .count(),
        2
    );
    assert!(matches!(link.completed(next)[..], [Ok(_)]));
}

/// Both endpoints in the v0.1 wire profile.
fn v0_1_link() -> Link {
    let mut server = ServerConfig::default();
    server.call.wire_profile = WireProfile::V0_1;
    Link::with_server(
        ClientConfig::default().with_wire_profile(WireProfile::V0_1),
        server,
    )
}

#[test]
fn v0_1_calls_cross_a_v0_1_link_without_the_fields_v0_1_lacks() {
    let mut link = v0_1_link();
    let now = link.now;
    let mut request = append(7);
    request.leader = Bytes::from_static(b"10.0.0.1:7000");
    request.entries[0].appended_at = Some(std::time::UNIX_EPOCH + Duration::from_secs(1));
    let vote = RequestVoteRequest {
        term: 3,
        last_log_index: 6,
        last_log_term: 2,
        leadership_transfer: true,
        candidate: Bytes::from_static(b"10.0.0.1:7000"),
        ..Default::default()
    };
    let calls = [
        link.client
            .start_rpc(PEER, OutgoingRpc::AppendEntries(request.clone()), now),
        link.client
            .start_rpc(PEER, OutgoingRpc::RequestVote(vote.clone()), now),
    ];
    link.run();
    for call in calls {
        let [Ok(_)] = &link.completed(call)[..] else {
            panic!("{:?}", link.completed(call))
        };
    }
    // What v0.1 carries arrives in its fields; the leader and the entry's
    // time, which it cannot carry, do not.
    let mut expected = request.clone();
    expected.leader = Bytes::new();
    expected.entries[0].appended_at = None;
    assert_eq!(
        link.served,
        vec![
            RaftRequest::AppendEntries(expected.clone()),
            RaftRequest::RequestVote(vote)
        ]
    );

    // A pipeline too.
    let pipeline = link.client.open_pipeline(PEER, link.now);
    link.run();
    link.client.append(pipeline, &request, link.now).unwrap();
    link.run();
    assert!(link.events.iter().any(|e| matches!(
        e,
        ClientEvent::Appended { result: Ok(r), .. } if r.last_log == 7
    )));
    assert_eq!(
        link.served.last(),
        Some(&RaftRequest::AppendEntries(expected))
    );
}

#[test]
fn v0_1_pre_vote_fails_at_once_and_sends_nothing() {
    let mut link = v0_1_link();
    let now = link.now;
    let call = link.client.start_rpc(
        PEER,
        OutgoingRpc::RequestPreVote(RequestPreVoteRequest {
            term: 4,
            ..Default::default()
        }),
        now,
    );
    link.run();
    let [Err(e)] = &link.completed(call)[..] else {
        panic!("{:?}", link.completed(call))
    };
    assert_eq!(e, &TransportError::PreVoteUnsupported(WireProfile::V0_1));
    assert_eq!(e.code(), Code::Unimplemented);
    assert!(e.to_string().contains("unexpected command"), "{e}");
    assert!(link.outputs.is_empty(), "{:?}", link.outputs);
    assert!(link.served.is_empty());
    assert_eq!(link.client.poll_timeout(), None);

    // Under the default profile the same call is sent and answered.
    let mut link = Link::new(ClientConfig::default());
    let now = link.now;
    let call = link.client.start_rpc(
        PEER,
        OutgoingRpc::RequestPreVote(RequestPreVoteRequest {
            term: 4,
            ..Default::default()
        }),
        now,
    );
    link.run();
    assert!(matches!(link.completed(call)[..], [Ok(_)]));
}

#[test]
fn v0_1_requests_to_a_v0_2_server_fail_with_internal() {
    let mut link = Link::with_server(
        ClientConfig::default().with_wire_profile(WireProfile::V0_1),
        ServerConfig::default(),
    );
    let now = link.now;
    let call = link
        .client
        .start_rpc(PEER, OutgoingRpc::AppendEntries(append(7)), now);
    link.run();
    let [Err(TransportError::Status(status))] = &link.completed(call)[..] else {
        panic!("{:?}", link.completed(call))
    };
    assert_eq!(status.code(), Code::Internal, "{status}");
    assert!(link.served.is_empty());
}

#[test]
fn removing_a_peer_lets_its_calls_finish_then_closes_and_forgets_it() {
    let mut link = Link::new(ClientConfig::default());
    link.answer = false;
    let vote = link.vote();
    assert_eq!(
        link.outputs
            .iter()
            .filter(|o| o.starts_with("open"))
            .count(),
        1
    );
    link.client.remove_peer(PEER, link.now);
    link.run();
    assert!(
        !link.outputs.contains(&"close".to_string()),
        "{:?}",
        link.outputs
    );
    // The vote is answered: it completes, then its connection closes.
    link.answer = true;
    link.run();
    assert!(
        matches!(link.completed(vote)[..], [Ok(_)]),
        "{:?}",
        link.events
    );
    assert_eq!(link.outputs.last().map(String::as_str), Some("close"));
    // A later call connects afresh.
    let connects = link
        .outputs
        .iter()
        .filter(|o| o.starts_with("connect"))
        .count();
    let again = link.vote();
    assert!(matches!(link.completed(again)[..], [Ok(_)]));
    assert_eq!(
        link.outputs
            .iter()
            .filter(|o| o.starts_with("connect"))
            .count(),
        connects + 1
    );
}

#[test]
fn an_idle_connection_closes_after_the_idle_timeout_and_only_then() {
    let idle = Duration::from_secs(30);
    let mut link = Link::new(ClientConfig::default().with_idle_timeout(Some(idle)));
    let vote = link.vote();
    assert!(matches!(link.completed(vote)[..], [Ok(_)]));
    let idle_from = link.now;
    assert_eq!(link.client.poll_timeout(), Some(idle_from + idle));
    link.advance(idle - Duration::from_secs(1));
    assert!(!link.outputs.contains(&"close".to_string()));
    // A call in between restarts the clock.
    let vote = link.vote();
    assert!(matches!(link.completed(vote)[..], [Ok(_)]));
    let idle_from = link.now;
    link.advance(idle - Duration::from_secs(1));
    assert!(!link.outputs.contains(&"close".to_string()));
    link.advance(Duration::from_secs(1));
    assert_eq!(link.now, idle_from + idle);
    assert_eq!(link.outputs.last().map(String::as_str), Some("close"));
    assert_eq!(link.client.poll_timeout(), None);
    // Without the option, never.
    let mut link = Link::new(ClientConfig::default());
    link.vote();
    link.advance(Duration::from_secs(3600));
    assert!(!link.outputs.contains(&"close".to_string()));
}

#[test]
fn peer_stats_show_connections_calls_bytes_and_failures() {
    let mut link = Link::new(ClientConfig::default());
    assert!(link.client.peer_stats(link.now).is_empty());
    let vote = link.vote();
    assert!(matches!(link.completed(vote)[..], [Ok(_)]));
    let [stats] = &link.client.peer_stats(link.now)[..] else {
        panic!()
    };
    assert_eq!(stats.peer, PEER);
    let request = RequestVoteRequest {
        term: 3,
        ..Default::default()
    };
    let response = crate::reference::response(
        &RaftRequest::RequestVote(request.clone()),
        RpcHeader::default(),
        None,
    );
    assert_eq!(stats.bytes_sent, 5 + request.encoded_len() as u64);
    let framed_response = response.encode(&MessageEncoder::default()).unwrap();
    assert_eq!(stats.bytes_received, framed_response.len() as u64);
    assert_eq!(stats.calls_in_flight, 0);
    assert!(matches!(
        stats.connections.slots[0],
        crate::pool::SlotState::Ready { streams: 0, .. }
    ));
    assert_eq!(stats.connections.failures, 0);

    // A call and a pipeline in flight.
    link.answer = false;
    link.vote();
    let pipeline = link.client.open_pipeline(PEER, link.now);
    link.run();
    link.client.append(pipeline, &append(1), link.now).unwrap();
    link.run();
    let stats = &link.client.peer_stats(link.now)[0];
    assert_eq!(
        (
            stats.calls_in_flight,
            stats.pipelines,
            stats.appends_in_flight
        ),
        (2, 1, 1)
    );
    // What the calls in flight sent counts already: a second vote, and
    // the append (5-byte prefix each).
    assert_eq!(
        stats.bytes_sent,
        2 * (5 + request.encoded_len() as u64) + 5 + append(1).encoded_len() as u64
    );
    assert_eq!(stats.bytes_received, framed_response.len() as u64);

    // A peer that cannot be reached: its failure and error.
    let mut link = Link::new(ClientConfig::default());
    link.accept = false;
    link.vote();
    let conn = link.client.conns.keys().copied().next().unwrap();
    link.client
        .handle_connect_failed(conn, "connection refused", link.now);
    let stats = &link.client.peer_stats(link.now)[0];
    assert_eq!(stats.connections.failures, 1);
    assert!(
        stats
            .connections
            .last_error
            .as_ref()
            .is_some_and(|e| e.message().contains("connection refused")),
        "{stats:?}"
    );
}
