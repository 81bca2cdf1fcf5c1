//! The behaviour suite with every serving transport mounted on a tonic
//! server (`raft-grpc-transport-tower`'s `RaftService` under hyper), called
//! by the tokio backend's client, on a multi-thread tokio runtime.

type Rt = raft_grpc_transport_tokio::TokioRuntime;

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(future)
}

/// A transport without a listener of its own, its Raft service mounted on
/// a tonic server on `addr`; the server stops once the transport closes.
async fn bind_server(
    addr: &str,
    config: raft_grpc_transport_driver::Config,
) -> std::io::Result<raft_grpc_transport_driver::GrpcTransport<Rt>> {
    // A tonic server lets go of its listener once its connections have
    // drained after the shutdown signal: a restart on the same address
    // waits for that.
    let mut tries = 0;
    let listener = loop {
        match tokio::net::TcpListener::bind(addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < 200 => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            bound => break bound?,
        }
    };
    let local = listener.local_addr()?;
    let transport =
        raft_grpc_transport_driver::GrpcTransport::<Rt>::builder(local.to_string(), config).build();
    let service = raft_grpc_transport_tower::RaftService::new(&transport);
    let closed = service.closed();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, closed)
            .await;
    });
    Ok(transport)
}

include!("../suite.rs");
