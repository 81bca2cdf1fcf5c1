//! The HTTP/2 facts the endpoints and a driver share: error codes, and the
//! settings a driver gives its HTTP/2 library.
//!
//! This module owns the HTTP/2 error codes (RFC 9113 §7) the endpoints
//! speak in — a driver reports a stream reset or a GOAWAY with the code it
//! carried, and sends the codes the endpoints ask for — and
//! [`Http2Settings`], the connection settings of both endpoints (windows,
//! frame size, stream and header limits), so that a driver applies them to
//! its HTTP/2 library and defines none of its own. It does not own frames
//! or the connection state machine: that is the driver's HTTP/2 library.

/// NO_ERROR: graceful shutdown, or a stream the sender no longer needs.
pub const NO_ERROR: u32 = 0x0;
/// PROTOCOL_ERROR.
pub const PROTOCOL_ERROR: u32 = 0x1;
/// INTERNAL_ERROR.
pub const INTERNAL_ERROR: u32 = 0x2;
/// FLOW_CONTROL_ERROR.
pub const FLOW_CONTROL_ERROR: u32 = 0x3;
/// STREAM_CLOSED.
pub const STREAM_CLOSED: u32 = 0x5;
/// REFUSED_STREAM: the stream was not processed, so retrying is safe.
pub const REFUSED_STREAM: u32 = 0x7;
/// CANCEL: the stream is no longer needed.
pub const CANCEL: u32 = 0x8;
/// ENHANCE_YOUR_CALM: the peer is generating excessive load (grpc-go
/// closes connections that ping too often with it, debug data
/// `too_many_pings`).
pub const ENHANCE_YOUR_CALM: u32 = 0xb;
/// INADEQUATE_SECURITY.
pub const INADEQUATE_SECURITY: u32 = 0xc;

/// HTTP/2's default initial stream window (65,535 bytes): what a peer may
/// send on a new stream before any WINDOW_UPDATE, unless its SETTINGS say
/// otherwise.
pub const DEFAULT_INITIAL_WINDOW: u32 = 65_535;

/// The HTTP/2 settings of a node's connections, both as a client and as a
/// server. A driver applies them to its HTTP/2 library; they come from the
/// transport's [`Config`](crate::config::Config), where the defaults are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Http2Settings {
    /// SETTINGS_INITIAL_WINDOW_SIZE we advertise: what a peer may send on
    /// one stream before we release capacity.
    pub initial_stream_window: u32,
    /// The connection-level receive window.
    pub initial_connection_window: u32,
    /// SETTINGS_MAX_FRAME_SIZE we accept (and the largest DATA frame we
    /// send, within the peer's).
    pub max_frame_size: u32,
    /// How much a stream may hand the HTTP/2 library ahead of the socket.
    pub max_send_buffer: usize,
    /// SETTINGS_MAX_CONCURRENT_STREAMS a peer may open on one of our
    /// connections (server side).
    pub max_concurrent_streams: u32,
    /// SETTINGS_MAX_HEADER_LIST_SIZE: the largest decoded header list we
    /// accept (a tiny HPACK block can decode to megabytes).
    pub max_header_list_size: u32,
}

impl Default for Http2Settings {
    fn default() -> Self {
        crate::config::Config::default().http2()
    }
}

crate::config::setters!(Http2Settings {
    with_initial_stream_window => initial_stream_window: u32,
    with_initial_connection_window => initial_connection_window: u32,
    with_max_frame_size => max_frame_size: u32,
    with_max_send_buffer => max_send_buffer: usize,
    with_max_concurrent_streams => max_concurrent_streams: u32,
    with_max_header_list_size => max_header_list_size: u32,
});
