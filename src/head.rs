//! Request and response heads of the Raft service's gRPC calls, as pure
//! functions over `http` types.
//!
//! This module owns:
//! * [`RpcMethod`]: the six methods of `RaftTransportService`, their `:path`
//!   and streaming shape, and routing a `:path` to one (`UNIMPLEMENTED` for
//!   an unknown service or method);
//! * the client's request head ([`RequestHead::to_request`]) and the
//!   server's validation of it ([`validate_request`]: 405 for a method other
//!   than POST, 415 for a content-type other than gRPC's, `UNIMPLEMENTED`,
//!   `INTERNAL` for a malformed `grpc-timeout`);
//! * the server's response heads ([`response_head`], [`trailers_only`]) and
//!   the client's reading of them ([`classify_response`]; trailers are read
//!   with [`Status::from_trailers`]).
//!
//! It owns no call state: what happens after a head is accepted belongs to
//! the call machines.
//!
//! ```
//! use std::time::Duration;
//! use http::uri::Authority;
//! use raft_grpc_transport::head::{validate_request, RequestHead, RpcMethod};
//!
//! let head = RequestHead::new(
//!     RpcMethod::AppendEntries,
//!     Authority::from_static("10.0.0.2:7000"),
//!     Some(Duration::from_secs(10)),
//! );
//! let request = head.to_request();
//! assert_eq!(request.uri(), "http://10.0.0.2:7000/proto.raft.v1.RaftTransportService/AppendEntries");
//!
//! let (parts, ()) = request.into_parts();
//! let accepted = validate_request(&parts).unwrap();
//! assert_eq!(accepted.method, RpcMethod::AppendEntries);
//! assert_eq!(accepted.timeout, Some(Duration::from_secs(10)));
//! ```

use std::time::Duration;

use http::header::{CONTENT_TYPE, TE, USER_AGENT};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri};

use crate::status::{Code, Status};
use crate::timeout::{GRPC_TIMEOUT, decode_grpc_timeout, encode_grpc_timeout};
use crate::wire::SERVICE_NAME;

/// The content-type this library sends.
pub const CONTENT_TYPE_GRPC: &str = "application/grpc";
/// Header naming the compression of messages.
pub const GRPC_ENCODING: &str = "grpc-encoding";
/// Header listing the compressions a peer accepts.
pub const GRPC_ACCEPT_ENCODING: &str = "grpc-accept-encoding";
/// The `user-agent` this library sends.
pub const USER_AGENT_VALUE: &str = concat!("grpc-rust-raft/", env!("CARGO_PKG_VERSION"));

/// How many messages each side of a call sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallShape {
    /// One request, one response.
    Unary,
    /// A stream of requests, one response.
    ClientStreaming,
    /// A stream of requests and a stream of responses.
    BidiStreaming,
}

/// A method of `proto.raft.v1.RaftTransportService`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RpcMethod {
    /// `AppendEntriesPipeline`: bidirectional stream of AppendEntries.
    AppendEntriesPipeline,
    /// `AppendEntries`: unary.
    AppendEntries,
    /// `RequestVote`: unary.
    RequestVote,
    /// `InstallSnapshot`: client stream (metadata, then data chunks).
    InstallSnapshot,
    /// `TimeoutNow`: unary.
    TimeoutNow,
    /// `RequestPreVote`: unary.
    RequestPreVote,
}

impl RpcMethod {
    /// All six methods.
    pub const ALL: [RpcMethod; 6] = [
        RpcMethod::AppendEntriesPipeline,
        RpcMethod::AppendEntries,
        RpcMethod::RequestVote,
        RpcMethod::InstallSnapshot,
        RpcMethod::TimeoutNow,
        RpcMethod::RequestPreVote,
    ];

    /// The method's name in the service, e.g. `"AppendEntries"`.
    pub fn name(self) -> &'static str {
        match self {
            RpcMethod::AppendEntriesPipeline => "AppendEntriesPipeline",
            RpcMethod::AppendEntries => "AppendEntries",
            RpcMethod::RequestVote => "RequestVote",
            RpcMethod::InstallSnapshot => "InstallSnapshot",
            RpcMethod::TimeoutNow => "TimeoutNow",
            RpcMethod::RequestPreVote => "RequestPreVote",
        }
    }

    /// The HTTP/2 `:path`, e.g.
    /// `"/proto.raft.v1.RaftTransportService/AppendEntries"`.
    pub fn path(self) -> &'static str {
        match self {
            RpcMethod::AppendEntriesPipeline => {
                "/proto.raft.v1.RaftTransportService/AppendEntriesPipeline"
            }
            RpcMethod::AppendEntries => "/proto.raft.v1.RaftTransportService/AppendEntries",
            RpcMethod::RequestVote => "/proto.raft.v1.RaftTransportService/RequestVote",
            RpcMethod::InstallSnapshot => "/proto.raft.v1.RaftTransportService/InstallSnapshot",
            RpcMethod::TimeoutNow => "/proto.raft.v1.RaftTransportService/TimeoutNow",
            RpcMethod::RequestPreVote => "/proto.raft.v1.RaftTransportService/RequestPreVote",
        }
    }

    /// How many messages each side sends.
    pub fn shape(self) -> CallShape {
        match self {
            RpcMethod::AppendEntriesPipeline => CallShape::BidiStreaming,
            RpcMethod::InstallSnapshot => CallShape::ClientStreaming,
            _ => CallShape::Unary,
        }
    }

    /// Routes a `:path` to its method. An unknown service or method is
    /// `UNIMPLEMENTED`, as gRPC requires.
    pub fn from_path(path: &str) -> Result<RpcMethod, Status> {
        let Some((service, method)) = path.strip_prefix('/').and_then(|p| p.split_once('/')) else {
            return Err(Status::new(
                Code::Unimplemented,
                format!("malformed method path {path:?}"),
            ));
        };
        if service != SERVICE_NAME {
            return Err(Status::new(
                Code::Unimplemented,
                format!("unknown service {service}"),
            ));
        }
        RpcMethod::ALL
            .into_iter()
            .find(|m| m.name() == method)
            .ok_or_else(|| {
                Status::new(
                    Code::Unimplemented,
                    format!("unknown method {method} for service {service}"),
                )
            })
    }
}

/// What a client puts in the head of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestHead {
    /// The method called.
    pub method: RpcMethod,
    /// The peer's authority (`host:port`), sent as `:authority`.
    pub authority: Authority,
    /// The call's timeout, sent as `grpc-timeout`; `None` for no deadline.
    pub timeout: Option<Duration>,
    /// The connection runs TLS: the request says `:scheme https` (else
    /// `http`). Set it with [`with_https`](Self::with_https).
    pub https: bool,
    /// Custom metadata sent with the request (an `authorization` token,
    /// say); see [`crate::metadata::check_custom_metadata`].
    pub metadata: http::HeaderMap,
}

impl RequestHead {
    /// The head of a call of `method` to `authority`, with `timeout` as its
    /// `grpc-timeout` (`None`: no deadline).
    pub fn new(method: RpcMethod, authority: Authority, timeout: Option<Duration>) -> RequestHead {
        RequestHead {
            method,
            authority,
            timeout,
            https: false,
            metadata: http::HeaderMap::new(),
        }
    }

    /// Sends `metadata` with the request, after the gRPC headers.
    #[must_use]
    pub fn with_metadata(mut self, metadata: http::HeaderMap) -> RequestHead {
        self.metadata = metadata;
        self
    }

    /// Says whether the connection runs TLS (`:scheme https`).
    #[must_use]
    pub fn with_https(mut self, https: bool) -> RequestHead {
        self.https = https;
        self
    }

    /// The request head as h2 wants it: `POST` to an absolute `http://` (or
    /// `https://`) URI,
    /// with `content-type: application/grpc`, `te: trailers`, `user-agent`
    /// and, when there is a timeout, `grpc-timeout`.
    pub fn to_request(&self) -> Request<()> {
        let uri = Uri::from_parts({
            let mut parts = http::uri::Parts::default();
            parts.scheme = Some(if self.https {
                Scheme::HTTPS
            } else {
                Scheme::HTTP
            });
            parts.authority = Some(self.authority.clone());
            parts.path_and_query = Some(PathAndQuery::from_static(self.method.path()));
            parts
        })
        .unwrap_or_else(|_| Uri::from_static("/"));
        let mut request = Request::new(());
        *request.method_mut() = Method::POST;
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_GRPC));
        headers.insert(TE, HeaderValue::from_static("trailers"));
        headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
        if let Some(timeout) = self.timeout {
            headers.insert(GRPC_TIMEOUT, encode_grpc_timeout(timeout));
        }
        // Every value of every custom name; the reserved ones are ours.
        for (name, value) in &self.metadata {
            if !crate::metadata::is_reserved_name(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        request
    }
}

/// A request head the server accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct AcceptedRequest {
    /// The method called.
    pub method: RpcMethod,
    /// The client's timeout from `grpc-timeout`, if it sent one.
    pub timeout: Option<Duration>,
}

/// Why the server refuses a request head, and how it answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestRejection {
    /// Not a POST: answer HTTP 405.
    #[error("HTTP method {0} is not allowed; gRPC uses POST")]
    MethodNotAllowed(Method),
    /// Not a gRPC content-type: answer HTTP 415.
    #[error("content-type {0:?} is not application/grpc")]
    UnsupportedMediaType(String),
    /// A gRPC-level refusal: answer with this status as Trailers-Only.
    #[error("{0}")]
    Status(Status),
}

impl RequestRejection {
    /// The gRPC status a client would see for this rejection.
    pub fn status(&self) -> Status {
        match self {
            RequestRejection::MethodNotAllowed(_) => Status::new(
                Code::from_http_status(StatusCode::METHOD_NOT_ALLOWED),
                self.to_string(),
            ),
            RequestRejection::UnsupportedMediaType(_) => Status::new(
                Code::from_http_status(StatusCode::UNSUPPORTED_MEDIA_TYPE),
                self.to_string(),
            ),
            RequestRejection::Status(status) => status.clone(),
        }
    }

    /// The complete response to send, ending the stream.
    pub fn to_response(&self) -> Response<()> {
        match self {
            RequestRejection::MethodNotAllowed(_) => {
                let mut response = plain_response(StatusCode::METHOD_NOT_ALLOWED);
                response
                    .headers_mut()
                    .insert(http::header::ALLOW, HeaderValue::from_static("POST"));
                response
            }
            RequestRejection::UnsupportedMediaType(_) => {
                let mut response = plain_response(StatusCode::UNSUPPORTED_MEDIA_TYPE);
                response.headers_mut().insert(
                    http::header::ACCEPT,
                    HeaderValue::from_static(CONTENT_TYPE_GRPC),
                );
                response
            }
            RequestRejection::Status(status) => {
                let mut response = trailers_only(status);
                if status.code() == Code::Unimplemented {
                    response
                        .headers_mut()
                        .insert(GRPC_ACCEPT_ENCODING, HeaderValue::from_static("identity"));
                }
                response
            }
        }
    }
}

fn plain_response(status: StatusCode) -> Response<()> {
    let mut response = Response::new(());
    *response.status_mut() = status;
    response
}

/// Is this a gRPC content-type we speak: `application/grpc` or
/// `application/grpc+proto`, in any case, with optional parameters?
pub fn is_grpc_content_type(value: &HeaderValue) -> bool {
    let Ok(value) = value.to_str() else {
        return false;
    };
    let media_type = value.split(';').next().unwrap_or("").trim();
    media_type.eq_ignore_ascii_case("application/grpc")
        || media_type.eq_ignore_ascii_case("application/grpc+proto")
}

/// Validates a request head on the server and routes it.
///
/// Checks, in order: the HTTP method is POST (else 405); the content-type is
/// gRPC's (else 415); the `:path` names a method of the Raft service (else
/// `UNIMPLEMENTED`); any `grpc-encoding` is `identity`, since this library
/// compresses nothing (else `UNIMPLEMENTED`); any `grpc-timeout` is
/// well-formed (else `INTERNAL`). A missing `te: trailers` is accepted: it
/// exists to detect proxies, and h2 already refuses any other `te` value.
pub fn validate_request(parts: &http::request::Parts) -> Result<AcceptedRequest, RequestRejection> {
    if parts.method != Method::POST {
        return Err(RequestRejection::MethodNotAllowed(parts.method.clone()));
    }
    match parts.headers.get(CONTENT_TYPE) {
        Some(value) if is_grpc_content_type(value) => {}
        other => {
            return Err(RequestRejection::UnsupportedMediaType(
                other
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .unwrap_or_default(),
            ));
        }
    }
    let method = RpcMethod::from_path(parts.uri.path()).map_err(RequestRejection::Status)?;
    if let Some(encoding) = parts.headers.get(GRPC_ENCODING) {
        if encoding.as_bytes() != b"identity" {
            return Err(RequestRejection::Status(Status::new(
                Code::Unimplemented,
                format!(
                    "message compression {:?} is not supported; send identity",
                    String::from_utf8_lossy(encoding.as_bytes())
                ),
            )));
        }
    }
    let timeout = parts
        .headers
        .get(GRPC_TIMEOUT)
        .map(|value| decode_grpc_timeout(value.as_bytes()))
        .transpose()
        .map_err(|e| RequestRejection::Status(e.status()))?;
    Ok(AcceptedRequest { method, timeout })
}

/// The head of a response whose messages and trailers follow: HTTP 200 with
/// `content-type: application/grpc`.
pub fn response_head() -> Response<()> {
    let mut response = Response::new(());
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_GRPC));
    response
}

/// A Trailers-Only response: one HEADERS frame (sent with END_STREAM) that
/// carries the status, for a call that ends without a response message.
pub fn trailers_only(status: &Status) -> Response<()> {
    let mut response = response_head();
    status.write_to(response.headers_mut());
    response
}

/// What the head of a response tells the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseStart {
    /// A normal response: messages, then trailers, follow.
    Messages,
    /// A Trailers-Only response: the call is over with this status (which
    /// may be `OK`, for a call that sent no response message).
    TrailersOnly(Status),
}

/// Reads the head of a response on the client.
///
/// `end_of_stream` says whether the HEADERS frame ended the stream. A head
/// that carries `grpc-status` is Trailers-Only, whatever its HTTP status.
/// Without `grpc-status`, an HTTP status other than 200 is mapped with
/// [`Code::from_http_status`], a content-type other than gRPC's is
/// `UNKNOWN`, and a head that ends the stream is `UNKNOWN` (a response must
/// end with `grpc-status`).
pub fn classify_response(
    parts: &http::response::Parts,
    end_of_stream: bool,
) -> Result<ResponseStart, Status> {
    if let Some(status) = Status::from_headers(&parts.headers) {
        return Ok(ResponseStart::TrailersOnly(status));
    }
    if parts.status != StatusCode::OK {
        return Err(Status::new(
            Code::from_http_status(parts.status),
            format!(
                "the peer answered HTTP {} without a gRPC status",
                parts.status
            ),
        ));
    }
    match parts.headers.get(CONTENT_TYPE) {
        Some(value) if is_grpc_content_type(value) => {}
        other => {
            return Err(Status::new(
                Code::Unknown,
                format!(
                    "the peer answered with content-type {:?}, not application/grpc",
                    other.map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                ),
            ));
        }
    }
    if end_of_stream {
        return Err(Status::new(
            Code::Unknown,
            "the peer ended the response without grpc-status",
        ));
    }
    Ok(ResponseStart::Messages)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_parts(method: Method, path: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("http://peer{path}"));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    fn grpc_parts(path: &str, extra: &[(&str, &str)]) -> http::request::Parts {
        let mut headers = vec![("content-type", "application/grpc")];
        headers.extend_from_slice(extra);
        request_parts(Method::POST, path, &headers)
    }

    #[test]
    fn every_method_routes_from_its_path() {
        for method in RpcMethod::ALL {
            assert_eq!(RpcMethod::from_path(method.path()), Ok(method));
            assert_eq!(method.path(), format!("/{SERVICE_NAME}/{}", method.name()));
        }
        assert_eq!(
            RpcMethod::AppendEntriesPipeline.shape(),
            CallShape::BidiStreaming
        );
        assert_eq!(
            RpcMethod::InstallSnapshot.shape(),
            CallShape::ClientStreaming
        );
        assert_eq!(RpcMethod::TimeoutNow.shape(), CallShape::Unary);
    }

    #[test]
    fn unknown_service_or_method_is_unimplemented() {
        for path in [
            "/proto.raft.v1.RaftTransportService/Nope",
            "/other.Service/AppendEntries",
            "/",
            "",
            "/proto.raft.v1.RaftTransportService",
            "/proto.raft.v1.RaftTransportService/AppendEntries/extra",
        ] {
            let err = RpcMethod::from_path(path).unwrap_err();
            assert_eq!(err.code(), Code::Unimplemented, "{path}");
        }
    }

    #[test]
    fn request_head_has_the_grpc_headers() {
        let request = RequestHead {
            method: RpcMethod::InstallSnapshot,
            authority: Authority::from_static("127.0.0.1:9000"),
            timeout: Some(Duration::from_millis(1500)),
            https: false,
            metadata: http::HeaderMap::new(),
        }
        .to_request();
        assert_eq!(request.method(), Method::POST);
        assert_eq!(request.uri().scheme(), Some(&Scheme::HTTP));
        assert_eq!(
            request.uri().path(),
            "/proto.raft.v1.RaftTransportService/InstallSnapshot"
        );
        let over_tls = RequestHead::new(
            RpcMethod::InstallSnapshot,
            Authority::from_static("127.0.0.1:9000"),
            None,
        )
        .with_https(true)
        .to_request();
        assert_eq!(over_tls.uri().scheme(), Some(&Scheme::HTTPS));
        let mut metadata = http::HeaderMap::new();
        metadata.insert("authorization", HeaderValue::from_static("Bearer t0ken"));
        metadata.append("x-trace", HeaderValue::from_static("a"));
        metadata.append("x-trace", HeaderValue::from_static("b"));
        metadata.insert("content-type", HeaderValue::from_static("text/plain"));
        let with_token = RequestHead::new(
            RpcMethod::RequestVote,
            Authority::from_static("127.0.0.1:9000"),
            None,
        )
        .with_metadata(metadata)
        .to_request();
        assert_eq!(with_token.headers()["authorization"], "Bearer t0ken");
        let traces: Vec<_> = with_token.headers().get_all("x-trace").iter().collect();
        assert_eq!(traces, ["a", "b"], "every value of a name goes out");
        assert_eq!(with_token.headers()[CONTENT_TYPE], "application/grpc");
        assert_eq!(with_token.headers().get_all(CONTENT_TYPE).iter().count(), 1);
        assert_eq!(request.headers()[CONTENT_TYPE], "application/grpc");
        assert_eq!(request.headers()[TE], "trailers");
        assert!(
            request.headers()[USER_AGENT]
                .to_str()
                .unwrap()
                .starts_with("grpc-rust-raft/")
        );
        assert_eq!(request.headers()[GRPC_TIMEOUT], "1500000u");

        let no_deadline = RequestHead {
            method: RpcMethod::TimeoutNow,
            authority: Authority::from_static("peer"),
            timeout: None,
            https: false,
            metadata: http::HeaderMap::new(),
        }
        .to_request();
        assert!(no_deadline.headers().get(GRPC_TIMEOUT).is_none());
    }

    #[test]
    fn wrong_http_method_is_405() {
        let parts = request_parts(
            Method::GET,
            RpcMethod::AppendEntries.path(),
            &[("content-type", "application/grpc")],
        );
        let rejection = validate_request(&parts).unwrap_err();
        assert_eq!(rejection, RequestRejection::MethodNotAllowed(Method::GET));
        let response = rejection.to_response();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[http::header::ALLOW], "POST");
        assert_eq!(rejection.status().code(), Code::Unknown);
    }

    #[test]
    fn wrong_content_type_is_415() {
        for content_type in [
            None,
            Some("application/json"),
            Some("application/grpc+json"),
            Some("text/plain"),
        ] {
            let headers: Vec<(&str, &str)> =
                content_type.iter().map(|c| ("content-type", *c)).collect();
            let parts = request_parts(Method::POST, RpcMethod::AppendEntries.path(), &headers);
            let rejection = validate_request(&parts).unwrap_err();
            assert!(
                matches!(rejection, RequestRejection::UnsupportedMediaType(_)),
                "{content_type:?}"
            );
            assert_eq!(
                rejection.to_response().status(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            );
        }
    }

    #[test]
    fn grpc_content_type_variants_are_accepted() {
        for content_type in [
            "application/grpc",
            "application/grpc+proto",
            "Application/GRPC",
            "application/grpc; charset=utf-8",
        ] {
            let parts = request_parts(
                Method::POST,
                RpcMethod::RequestVote.path(),
                &[("content-type", content_type)],
            );
            assert_eq!(
                validate_request(&parts).unwrap().method,
                RpcMethod::RequestVote,
                "{content_type}"
            );
        }
    }

    #[test]
    fn unknown_method_is_trailers_only_unimplemented() {
        let parts = grpc_parts("/proto.raft.v1.RaftTransportService/Frobnicate", &[]);
        let rejection = validate_request(&parts).unwrap_err();
        assert_eq!(rejection.status().code(), Code::Unimplemented);
        let response = rejection.to_response();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["grpc-status"], "12");
        assert_eq!(response.headers()[CONTENT_TYPE], "application/grpc");
    }

    #[test]
    fn compression_is_unimplemented_and_identity_is_fine() {
        let parts = grpc_parts(
            RpcMethod::AppendEntries.path(),
            &[("grpc-encoding", "gzip")],
        );
        let rejection = validate_request(&parts).unwrap_err();
        assert_eq!(rejection.status().code(), Code::Unimplemented);
        assert_eq!(
            rejection.to_response().headers()[GRPC_ACCEPT_ENCODING],
            "identity"
        );
        let parts = grpc_parts(
            RpcMethod::AppendEntries.path(),
            &[("grpc-encoding", "identity")],
        );
        assert!(validate_request(&parts).is_ok());
    }

    #[test]
    fn malformed_timeout_is_internal() {
        let parts = grpc_parts(
            RpcMethod::AppendEntries.path(),
            &[("grpc-timeout", "10 seconds")],
        );
        assert_eq!(
            validate_request(&parts).unwrap_err().status().code(),
            Code::Internal
        );
    }

    #[test]
    fn response_heads_classify() {
        let (parts, ()) = response_head().into_parts();
        assert_eq!(
            classify_response(&parts, false),
            Ok(ResponseStart::Messages)
        );
        assert_eq!(
            classify_response(&parts, true).unwrap_err().code(),
            Code::Unknown
        );

        let status = Status::new(Code::Unavailable, "shutting down");
        let (parts, ()) = trailers_only(&status).into_parts();
        assert_eq!(
            classify_response(&parts, true),
            Ok(ResponseStart::TrailersOnly(status))
        );
    }

    #[test]
    fn non_200_without_grpc_status_maps_http_status() {
        for (http, code) in [
            (404, Code::Unimplemented),
            (503, Code::Unavailable),
            (400, Code::Internal),
            (500, Code::Unknown),
        ] {
            let mut response = plain_response(StatusCode::from_u16(http).unwrap());
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
            let (parts, ()) = response.into_parts();
            assert_eq!(
                classify_response(&parts, true).unwrap_err().code(),
                code,
                "{http}"
            );
        }
    }

    #[test]
    fn non_grpc_content_type_with_200_is_unknown() {
        let mut response = plain_response(StatusCode::OK);
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
        let (parts, ()) = response.into_parts();
        assert_eq!(
            classify_response(&parts, false).unwrap_err().code(),
            Code::Unknown
        );
    }
}
