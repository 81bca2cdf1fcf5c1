//! The in-flight window of an AppendEntriesPipeline stream.
//!
//! This module owns the bookkeeping that makes pipelining safe: at most K
//! requests in flight (appending blocks beyond that: this is the
//! back-pressure hashicorp/raft expects); responses matched to requests in
//! send order, each exactly once; a stream error failing everything in
//! flight; and closing, which fails what is left with the pipeline-shutdown
//! error. It holds one caller-chosen tag per request (an id, a responder)
//! and owns no stream.
//!
//! ```
//! use raft_grpc_transport::pipeline::{PipelineWindow, PipelineError};
//! use raft_grpc_transport::{Code, Status};
//!
//! let mut window = PipelineWindow::new(2);
//! window.push("a").unwrap();
//! window.push("b").unwrap();
//! assert_eq!(window.push("c"), Err(PipelineError::Full("c")));
//! assert_eq!(window.complete(), Ok("a"));
//! window.push("c").unwrap();
//! let failed = window.fail(Status::new(Code::Unavailable, "stream reset"));
//! assert_eq!(failed, vec!["b", "c"]);
//! assert!(matches!(window.push("d"), Err(PipelineError::Closed(_, "d"))));
//! ```

use std::collections::VecDeque;

use crate::status::{Code, Status};

/// Default requests in flight on one pipeline: hashicorp's TCP transport
/// allows 2, the Go gRPC library 64. Tuned by benchmark.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;

/// The status of requests still in flight when a pipeline is closed
/// (hashicorp's `ErrPipelineShutdown`).
pub fn pipeline_shutdown() -> Status {
    Status::new(Code::Unavailable, "append pipeline closed")
}

/// Why a request cannot enter the window; gives the tag back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError<T> {
    /// K requests are in flight: wait for a completion.
    #[error("pipeline window is full")]
    Full(T),
    /// The pipeline failed or was closed, with this status.
    #[error("pipeline is closed: {0}")]
    Closed(Status, T),
}

/// Requests in flight on one pipeline, oldest first.
#[derive(Debug, Clone)]
pub struct PipelineWindow<T> {
    max_in_flight: usize,
    in_flight: VecDeque<T>,
    closed: Option<Status>,
}

impl<T> PipelineWindow<T> {
    /// A window of at most `max_in_flight` requests (at least 1).
    pub fn new(max_in_flight: usize) -> Self {
        PipelineWindow {
            max_in_flight: max_in_flight.max(1),
            in_flight: VecDeque::new(),
            closed: None,
        }
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether another request may be sent now.
    pub fn has_room(&self) -> bool {
        self.closed.is_none() && self.in_flight.len() < self.max_in_flight
    }

    /// Why the pipeline is closed, if it is.
    pub fn closed(&self) -> Option<&Status> {
        self.closed.as_ref()
    }

    /// Records a request as sent.
    pub fn push(&mut self, tag: T) -> Result<(), PipelineError<T>> {
        if let Some(status) = &self.closed {
            return Err(PipelineError::Closed(status.clone(), tag));
        }
        if self.in_flight.len() >= self.max_in_flight {
            return Err(PipelineError::Full(tag));
        }
        self.in_flight.push_back(tag);
        Ok(())
    }

    /// A response arrived: it answers the oldest request in flight. A
    /// response with nothing in flight is a protocol violation: the window
    /// closes with `INTERNAL` and that status is returned.
    pub fn complete(&mut self) -> Result<T, Status> {
        if let Some(status) = &self.closed {
            return Err(status.clone());
        }
        self.in_flight.pop_front().ok_or_else(|| {
            let status = Status::new(
                Code::Internal,
                "the peer sent a pipeline response with no request in flight",
            );
            self.closed = Some(status.clone());
            status
        })
    }

    /// The stream failed: every request in flight fails with `status`, and
    /// the window accepts nothing more. Returns their tags, oldest first.
    pub fn fail(&mut self, status: Status) -> Vec<T> {
        if self.closed.is_none() {
            self.closed = Some(status);
        }
        self.in_flight.drain(..).collect()
    }

    /// Closes the pipeline: what is in flight fails with
    /// [`pipeline_shutdown`]. Returns their tags, oldest first.
    pub fn close(&mut self) -> Vec<T> {
        self.fail(pipeline_shutdown())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::quickcheck;

    #[test]
    fn response_with_nothing_in_flight_closes_the_window() {
        let mut window = PipelineWindow::<u32>::new(4);
        assert_eq!(window.complete().unwrap_err().code(), Code::Internal);
        assert!(!window.has_room());
        assert!(matches!(window.push(1), Err(PipelineError::Closed(_, 1))));
    }

    #[test]
    fn close_uses_the_shutdown_status() {
        let mut window = PipelineWindow::new(4);
        window.push(1).unwrap();
        assert_eq!(window.close(), vec![1]);
        assert_eq!(window.closed(), Some(&pipeline_shutdown()));
        assert_eq!(
            window.close(),
            Vec::<i32>::new(),
            "closing twice fails nothing twice"
        );
        assert_eq!(window.complete(), Err(pipeline_shutdown()));
    }

    quickcheck! {
        /// Under any mix of sends and completions, completions come out in
        /// send order, each request exactly once (completed or failed), and
        /// never more than K are in flight.
        fn completions_in_send_order_exactly_once(ops: Vec<bool>, k: u8) -> bool {
            let k = usize::from(k % 8) + 1;
            let mut window = PipelineWindow::new(k);
            let mut next = 0u32;
            let mut done = Vec::new();
            for send in ops {
                if send {
                    if window.push(next).is_ok() {
                        next += 1;
                    }
                } else if window.in_flight() > 0 {
                    done.push(window.complete().unwrap());
                }
                if window.in_flight() > k {
                    return false;
                }
            }
            done.extend(window.close());
            done == (0..next).collect::<Vec<_>>()
        }
    }
}
