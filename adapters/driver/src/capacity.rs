//! The one way both halves of the driver get send capacity from h2.
//!
//! h2 hands a stream send capacity only as far as it was reserved, and
//! buffers without bound what is sent beyond it. This module owns the two
//! steps every sending stream goes through: reserve what the endpoint
//! wants and read what h2 granted ([`granted`]), and, when the endpoint
//! wants more than that, ask h2 to wake the task when it grants more
//! ([`more_granted`]).

use std::task::{Context, Poll};

use bytes::Bytes;
use h2::SendStream;

/// Reserves `wanted` bytes on `send` (when it wants any) and returns the
/// capacity h2 granted.
pub(crate) fn granted(send: &mut SendStream<Bytes>, wanted: usize) -> usize {
    if wanted > 0 {
        send.reserve_capacity(wanted);
    }
    send.capacity()
}

/// Whether h2 granted more capacity already; otherwise the task is woken
/// when it does (or never, once the stream can send no more).
pub(crate) fn more_granted(send: &mut SendStream<Bytes>, cx: &mut Context<'_>) -> bool {
    matches!(send.poll_capacity(cx), Poll::Ready(Some(Ok(granted))) if granted > 0)
}
