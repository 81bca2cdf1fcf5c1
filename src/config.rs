//! Everything a transport can be tuned with, and the one place where the
//! defaults are.
//!
//! This module owns [`Config`]: the knobs of a node's transport as a user
//! sees them, with their documented defaults, and how they map onto the
//! configurations of the two endpoints ([`Config::client`],
//! [`Config::server`]) and onto HTTP/2 settings ([`Config::http2`]). The
//! endpoints' own `Default`s come from here, so a default is written once;
//! adapters take a `Config` and restate none of it.

use std::time::Duration;

use crate::call::ServerCallConfig;
use crate::client::{ClientConfig, KeepaliveConfig};
use crate::framing::{DEFAULT_MAX_MESSAGE_LEN, DEFAULT_ZERO_COPY_MIN};
use crate::http2::Http2Settings;
use crate::pipeline::DEFAULT_MAX_IN_FLIGHT;
use crate::pool::{Backoff, PoolConfig};
use crate::profile::WireProfile;
use crate::server::{ServerConfig, WindowConfig};
use crate::snapshot::{DEFAULT_CHUNK_SIZE, DEFAULT_TIMEOUT_SCALE};

/// Chainable setters for a configuration struct: for each `with_x => x: T`,
/// a `with_x(value)` that sets field `x` and returns the struct, so that a
/// `#[non_exhaustive]` configuration reads like a struct expression:
/// `Config::default().with_rpc_timeout(..).with_pool_size(..)`.
macro_rules! setters {
    ($ty:ident { $($setter:ident => $field:ident: $t:ty),* $(,)? }) => {
        /// The chainable setters, one per field.
        impl $ty {
            $(
                #[doc = concat!("Sets [`", stringify!($field), "`](Self::", stringify!($field), ").")]
                #[must_use]
                pub fn $setter(mut self, $field: $t) -> Self {
                    self.$field = $field;
                    self
                }
            )*
        }
    };
}
pub(crate) use setters;

/// Everything a transport can be tuned with.
///
/// Start from [`Config::default`] and change what you need, with the
/// chainable `with_*` setters or by assigning fields. The struct is
/// `#[non_exhaustive]`: a new knob in a later release is not a breaking
/// change, so struct expressions are not available outside this crate.
///
/// ```
/// use std::time::Duration;
/// use raft_grpc_transport::config::Config;
///
/// let config = Config::default()
///     .with_rpc_timeout(Duration::from_secs(2))
///     .with_pool_size(2);
/// assert_eq!(config.client().rpc_timeout, Duration::from_secs(2));
/// assert_eq!(config.server().call.max_request_len, 4 << 20);
///
/// let mut config = Config::default();
/// config.max_recv_message_len = 16 << 20;
/// assert_eq!(config.server().call.max_request_len, 16 << 20);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Config {
    /// Connections per peer (default 3). Heartbeats, votes and TimeoutNow
    /// use the first, snapshots the last, replication the ones between
    /// (see [`crate::pool`]).
    pub pool_size: usize,
    /// Deadline of an RPC (default 10 s, as hashicorp's transports);
    /// InstallSnapshot scales it by size.
    pub rpc_timeout: Duration,
    /// Bytes per extra `rpc_timeout` for InstallSnapshot (default 256 KiB,
    /// as hashicorp).
    pub snapshot_timeout_scale: u64,
    /// Snapshot data per message (default 1 MiB, cut to fit the send
    /// limit).
    pub snapshot_chunk_size: usize,
    /// A snapshot that makes no progress for this long fails with
    /// `DEADLINE_EXCEEDED` (default 30 s sending, twice that receiving).
    pub snapshot_stall_timeout: Duration,
    /// Largest message sent (default 4 MiB: what grpc-go and tonic accept
    /// by default).
    pub max_send_message_len: usize,
    /// Largest message accepted (default 4 MiB).
    pub max_recv_message_len: usize,
    /// Payloads at least this long reach HTTP/2 without a copy (default
    /// 16 KiB).
    pub zero_copy_min: usize,
    /// Requests in flight on one pipeline (default 64).
    pub pipeline_window: usize,
    /// HTTP/2 initial stream window (default 1 MiB).
    pub stream_window: u32,
    /// HTTP/2 connection window (default 16 MiB).
    pub connection_window: u32,
    /// How far a server connection's stream window grows when the link
    /// can carry more than one window per round trip (default 32 MiB; set
    /// it to `stream_window` for fixed windows). The growth follows a
    /// bandwidth-delay estimate (see [`crate::flow`]); the cap bounds what
    /// one peer can make a node buffer.
    pub max_stream_window: u32,
    /// HTTP/2 SETTINGS_MAX_FRAME_SIZE (default 1 MiB; HTTP/2's default of
    /// 16 KiB cuts large messages into many frames).
    pub max_frame_size: u32,
    /// Streams a peer may open on one of our connections (default 1024).
    pub max_concurrent_streams: u32,
    /// The largest decoded header list accepted (default 16 KiB: a tiny
    /// HPACK block can decode to megabytes).
    pub max_header_list_size: u32,
    /// While calls are in flight on a connection, send an HTTP/2 PING this
    /// often (default 5 min; `None` disables keepalive). No PING goes out
    /// on a connection without calls. The default is grpc-go's: its servers
    /// allow one PING per 5 minutes while calls are open (none without),
    /// and after three early ones close the connection with GOAWAY
    /// `too_many_pings`, so a shorter interval breaks long snapshots to Go
    /// nodes. Between our own nodes any interval works.
    pub keepalive_interval: Option<Duration>,
    /// A PING unanswered for this long closes the connection (default
    /// 20 s).
    pub keepalive_timeout: Duration,
    /// A connect (TCP, the HTTP/2 handshake and the first PING round trip)
    /// not done by then fails (default 5 s); an accepted connection that
    /// does not complete its handshake by then is dropped.
    pub connect_timeout: Duration,
    /// Reconnect backoff after a failed connect.
    pub backoff: Backoff,
    /// Incoming RPCs waiting for the consumer before streams stop reading
    /// (default 64).
    pub consumer_queue: usize,
    /// Snapshot chunks an incoming snapshot buffers ahead of its reader
    /// before its stream stops reading (default 2).
    pub snapshot_buffer: usize,
    /// Bytes of answers waiting for a client's receive window beyond which
    /// its stream takes no more requests (default 64 KiB).
    pub max_unsent_response: usize,
    /// Incoming connections held at once (default 512); more are refused
    /// with GOAWAY `ENHANCE_YOUR_CALM`.
    pub max_connections: usize,
    /// Incoming connections held at once from one IP address (default 32).
    pub max_connections_per_ip: usize,
    /// An incoming connection without streams for this long is sent GOAWAY
    /// (default 10 min; `None`: never).
    pub idle_timeout: Option<Duration>,
    /// An incoming stream that owes request data and gets none for this
    /// long fails with `DEADLINE_EXCEEDED` (default 30 s; `None`: never).
    pub request_data_timeout: Option<Duration>,
    /// Request bytes held for one incoming connection's streams (default
    /// 32 MiB; see [`ServerConfig::max_buffered_per_connection`]).
    pub max_buffered_per_connection: usize,
    /// Seed of the backoff jitter.
    pub seed: u64,
    /// An outgoing connection without calls for this long is closed; the
    /// next call to its peer reconnects (default `None`: never).
    pub outgoing_idle_timeout: Option<Duration>,
    /// The field numbering of the Raft requests, sent and received (default
    /// [`WireProfile::V0_2`], the Go library v0.2.0 and later; see
    /// [`crate::profile`]).
    pub wire_profile: WireProfile,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            pool_size: 3,
            rpc_timeout: Duration::from_secs(10),
            snapshot_timeout_scale: DEFAULT_TIMEOUT_SCALE,
            snapshot_chunk_size: DEFAULT_CHUNK_SIZE,
            snapshot_stall_timeout: Duration::from_secs(30),
            max_send_message_len: DEFAULT_MAX_MESSAGE_LEN,
            max_recv_message_len: DEFAULT_MAX_MESSAGE_LEN,
            zero_copy_min: DEFAULT_ZERO_COPY_MIN,
            pipeline_window: DEFAULT_MAX_IN_FLIGHT,
            stream_window: 1 << 20,
            connection_window: 16 << 20,
            max_stream_window: 32 << 20,
            max_frame_size: 1 << 20,
            max_concurrent_streams: 1024,
            max_header_list_size: 16 << 10,
            keepalive_interval: Some(Duration::from_secs(300)),
            keepalive_timeout: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(5),
            backoff: Backoff::default(),
            consumer_queue: 64,
            snapshot_buffer: 2,
            max_unsent_response: 64 << 10,
            max_connections: 512,
            max_connections_per_ip: 32,
            idle_timeout: Some(Duration::from_secs(600)),
            request_data_timeout: Some(Duration::from_secs(30)),
            max_buffered_per_connection: 32 << 20,
            seed: 0x5eed,
            outgoing_idle_timeout: None,
            wire_profile: WireProfile::V0_2,
        }
    }
}

setters!(Config {
    with_pool_size => pool_size: usize,
    with_rpc_timeout => rpc_timeout: Duration,
    with_snapshot_timeout_scale => snapshot_timeout_scale: u64,
    with_snapshot_chunk_size => snapshot_chunk_size: usize,
    with_snapshot_stall_timeout => snapshot_stall_timeout: Duration,
    with_max_send_message_len => max_send_message_len: usize,
    with_max_recv_message_len => max_recv_message_len: usize,
    with_zero_copy_min => zero_copy_min: usize,
    with_pipeline_window => pipeline_window: usize,
    with_stream_window => stream_window: u32,
    with_connection_window => connection_window: u32,
    with_max_stream_window => max_stream_window: u32,
    with_max_frame_size => max_frame_size: u32,
    with_max_concurrent_streams => max_concurrent_streams: u32,
    with_max_header_list_size => max_header_list_size: u32,
    with_keepalive_interval => keepalive_interval: Option<Duration>,
    with_keepalive_timeout => keepalive_timeout: Duration,
    with_connect_timeout => connect_timeout: Duration,
    with_backoff => backoff: Backoff,
    with_consumer_queue => consumer_queue: usize,
    with_snapshot_buffer => snapshot_buffer: usize,
    with_max_unsent_response => max_unsent_response: usize,
    with_max_connections => max_connections: usize,
    with_max_connections_per_ip => max_connections_per_ip: usize,
    with_idle_timeout => idle_timeout: Option<Duration>,
    with_request_data_timeout => request_data_timeout: Option<Duration>,
    with_max_buffered_per_connection => max_buffered_per_connection: usize,
    with_seed => seed: u64,
    with_outgoing_idle_timeout => outgoing_idle_timeout: Option<Duration>,
    with_wire_profile => wire_profile: WireProfile,
});

impl Config {
    /// The client endpoint's configuration.
    pub fn client(&self) -> ClientConfig {
        ClientConfig {
            pool: PoolConfig {
                slots_per_peer: self.pool_size,
                backoff: self.backoff,
                connect_timeout: self.connect_timeout,
                seed: self.seed,
            },
            rpc_timeout: self.rpc_timeout,
            max_send_message_len: self.max_send_message_len,
            max_recv_message_len: self.max_recv_message_len,
            zero_copy_min: self.zero_copy_min,
            pipeline_window: self.pipeline_window,
            snapshot_chunk_size: self.snapshot_chunk_size,
            snapshot_timeout_scale: self.snapshot_timeout_scale,
            snapshot_stall_timeout: self.snapshot_stall_timeout,
            keepalive: KeepaliveConfig {
                interval: self.keepalive_interval,
                timeout: self.keepalive_timeout,
            },
            https: false,
            idle_timeout: self.outgoing_idle_timeout,
            wire_profile: self.wire_profile,
        }
    }

    /// The server endpoint's configuration.
    pub fn server(&self) -> ServerConfig {
        ServerConfig {
            call: ServerCallConfig {
                max_request_len: self.max_recv_message_len,
                max_response_len: self.max_send_message_len,
                snapshot_stall_timeout: Some(self.snapshot_stall_timeout * 2),
                max_unsent_response: self.max_unsent_response,
                wire_profile: self.wire_profile,
            },
            consumer_queue: self.consumer_queue.max(1),
            snapshot_buffer: self.snapshot_buffer.max(1),
            handshake_timeout: self.connect_timeout,
            heartbeat_fast_path: false,
            pipelines_apart: false,
            windows: WindowConfig {
                initial_stream: self.stream_window,
                initial_connection: self.connection_window,
                max_stream: self.max_stream_window,
            },
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            idle_timeout: self.idle_timeout,
            request_data_timeout: self.request_data_timeout,
            max_buffered_per_connection: self.max_buffered_per_connection,
        }
    }

    /// The HTTP/2 settings of every connection.
    pub fn http2(&self) -> Http2Settings {
        Http2Settings {
            initial_stream_window: self.stream_window,
            initial_connection_window: self.connection_window,
            max_frame_size: self.max_frame_size,
            max_send_buffer: self.max_frame_size as usize,
            max_concurrent_streams: self.max_concurrent_streams,
            max_header_list_size: self.max_header_list_size,
        }
    }
}
