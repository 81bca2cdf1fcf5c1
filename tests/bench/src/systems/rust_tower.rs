//! `rust-tower`: our Raft service mounted on tonic's server
//! (`raft_grpc_transport_tower::RaftService` under hyper), beside which a
//! tonic user would mount their other services; called by our smol client
//! (the `rust-smol` client, unchanged).
//!
//! Server: tonic's `Server` on a current_thread tokio runtime, with the
//! HTTP/2 settings of the `tonic` system (so that the two differ only in
//! the service: tonic's generated one with a hand-written handler, or
//! ours, driven by the transport's endpoint). The transport behind the
//! service listens on nothing itself and runs on the same runtime
//! ([`TokioRuntime`]); its consumer loop is a task there, answering one
//! RPC at a time with `raft_grpc_transport_api::reference::answer`, and
//! heartbeats go to the heartbeat handler. The main thread only waits for
//! stdin to close.
//!
//! [`TokioRuntime`]: raft_grpc_transport_tokio::TokioRuntime

use raft_grpc_transport_tokio::{Config, GrpcTransport, TokioRuntime};
use raft_grpc_transport_tower::RaftService;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use super::tonic_grpc::{CONNECTION_WINDOW, MAX_FRAME, STREAM_WINDOW};
use super::{WINDOW, server_header};

/// Serves until stdin closes.
pub fn serve(listen: &str) -> Result<(), String> {
    let addr = listen
        .parse()
        .map_err(|e| format!("rust-tower: --listen {listen}: {e}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("rust-tower: runtime: {e}"))?;
    runtime.block_on(async move {
        let incoming = TcpIncoming::bind(addr)
            .map_err(|e| format!("rust-tower: bind {listen}: {e}"))?
            .with_nodelay(Some(true));
        let local = incoming
            .local_addr()
            .map_err(|e| format!("rust-tower: {e}"))?
            .to_string();
        let tokio = TokioRuntime::try_current().ok_or("rust-tower: no tokio runtime")?;
        let transport = GrpcTransport::builder(
            local.clone(),
            Config::default().with_pipeline_window(WINDOW as usize),
        )
        .runtime(tokio)
        .build();
        let header = server_header(&local);
        transport.set_heartbeat_handler(Some(
            raft_grpc_transport_api::reference::heartbeat_handler(header.clone()),
        ));
        let consumer = transport.consumer();
        tokio::spawn(async move {
            while let Some(rpc) = consumer.recv().await {
                raft_grpc_transport_api::reference::answer(rpc, header.clone()).await;
            }
        });
        // The orchestrator closes stdin when it is done with this server.
        std::thread::spawn(|| {
            super::wait_for_stdin_eof();
            std::process::exit(0);
        });
        super::announce(&local);
        Server::builder()
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            // As the tonic row's server (and as the README recommends).
            .http2_adaptive_window(Some(true))
            .max_frame_size(MAX_FRAME)
            .add_service(RaftService::new(&transport))
            .serve_with_incoming(incoming)
            .await
            .map_err(|e| format!("rust-tower: serve: {e}"))
    })
}
