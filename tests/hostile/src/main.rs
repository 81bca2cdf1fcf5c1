//! `hostile-target`: the node the hostile-peer tests attack.
//!
//! It serves the Raft service with the reference responder (as `node
//! serve`), with the transport's defaults unless a flag says otherwise,
//! prints `listening on ADDR`, and serves until it is killed. It runs as a
//! process of its own so that a test reads its memory alone.
//!
//! ```text
//! hostile-target [--listen ADDR] [--idle-timeout-ms N] [--request-data-timeout-ms N]
//!                [--connect-timeout-ms N] [--max-connections N] [--max-connections-per-ip N]
//!                [--max-header-list-size N] [--max-unsent-response N]
//! ```

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use futures_lite::future::block_on;
use raft_grpc_transport::message::RpcHeader;
use raft_grpc_transport_smol::{Config, GrpcTransport};

/// hashicorp/raft's current protocol version.
const PROTOCOL_VERSION: i64 = 3;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (listen, config) = match parse(&args) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("hostile-target: {e}");
            return ExitCode::FAILURE;
        }
    };
    block_on(async {
        let transport = match GrpcTransport::bind(&listen, config).await {
            Ok(transport) => transport,
            Err(e) => {
                eprintln!("hostile-target: cannot listen on {listen}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let addr = transport.local_addr().to_owned();
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "listening on {addr}").and_then(|()| stdout.flush());
        drop(stdout);
        let header = RpcHeader::new(PROTOCOL_VERSION, "target", addr);
        let consumer = transport.consumer();
        while let Some(rpc) = consumer.recv().await {
            smol::spawn(raft_grpc_transport_api::reference::answer(
                rpc,
                header.clone(),
            ))
            .detach();
        }
        ExitCode::SUCCESS
    })
}

fn parse(args: &[String]) -> Result<(String, Config), String> {
    let mut listen = "127.0.0.1:0".to_owned();
    let mut config = Config::default();
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| format!("`{flag}` wants a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("`{flag}` wants a number, not `{value}`"))
        };
        let millis = || number().map(Duration::from_millis);
        match flag.as_str() {
            "--listen" => listen = value.clone(),
            "--idle-timeout-ms" => config.idle_timeout = Some(millis()?),
            "--request-data-timeout-ms" => config.request_data_timeout = Some(millis()?),
            "--connect-timeout-ms" => config.connect_timeout = millis()?,
            "--max-connections" => config.max_connections = number()? as usize,
            "--max-connections-per-ip" => config.max_connections_per_ip = number()? as usize,
            "--max-header-list-size" => config.max_header_list_size = number()? as u32,
            "--max-unsent-response" => config.max_unsent_response = number()? as usize,
            other => return Err(format!("unknown flag `{other}`")),
        }
    }
    Ok((listen, config))
}
