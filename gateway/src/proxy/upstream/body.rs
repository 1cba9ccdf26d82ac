//! The upstream's response body as the client's connection reads it: taken off the upstream
//! connection frame by frame (no buffering of the whole body), its framing removed, and the
//! connection handed back to the pool once the body has been read to its end.
use super::codec::{invalid, Chunked, Decoded, Framing};
use super::{Connection, Target};
use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

pub struct PooledBody {
    /// `None` once the body ended or failed.
    conn: Option<Connection>,
    target: Target,
    reading: Reading,
    /// Whether the connection may carry another request after this body.
    keep_alive: bool,
}

enum Reading {
    Length(u64),
    Chunked(Chunked),
    UntilClose,
    Done,
}

impl PooledBody {
    pub(super) fn new(
        conn: Connection,
        target: Target,
        framing: Framing,
        keep_alive: bool,
    ) -> PooledBody {
        let reading = match framing {
            Framing::Empty => Reading::Done,
            Framing::Length(n) => Reading::Length(n),
            Framing::Chunked => Reading::Chunked(Chunked::default()),
            Framing::UntilClose => Reading::UntilClose,
        };
        let mut body = PooledBody {
            conn: Some(conn),
            target,
            reading,
            keep_alive,
        };
        // A body that is empty from the start (204, HEAD, length 0) is never polled.
        if matches!(body.reading, Reading::Done) {
            body.finish();
        }
        body
    }

    /// The body is complete: its connection goes back to the pool when nothing else came on it.
    fn finish(&mut self) {
        self.reading = Reading::Done;
        if let Some(conn) = self.conn.take() {
            if self.keep_alive && conn.buf.is_empty() {
                super::release(conn, &self.target);
            }
        }
    }

    fn fail(&mut self, e: std::io::Error) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        // The connection is in an unknown state: dropped, not pooled.
        self.conn = None;
        self.reading = Reading::Done;
        Poll::Ready(Some(Err(e.into())))
    }

    /// The body of a `101 Switching Protocols`: none. The connection is the upgraded
    /// protocol's now, for `into_switched` to take; it never returns to the pool.
    pub(super) fn switched(conn: Connection, target: Target) -> PooledBody {
        PooledBody {
            conn: Some(conn),
            target,
            reading: Reading::Done,
            keep_alive: false,
        }
    }

    /// The connection of a `switched` body, with what the upstream sent after its 101.
    pub fn into_switched(mut self) -> Option<super::Switched> {
        let conn = self.conn.take()?;
        Some(super::Switched {
            io: conn.io,
            early: conn.buf.freeze(),
        })
    }

    /// The next frame from what the connection has buffered, if there is one.
    fn buffered_frame(&mut self) -> std::io::Result<Option<Option<Frame<Bytes>>>> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(Some(None));
        };
        let buf = &mut conn.buf;
        let (frame, ended) = match &mut self.reading {
            Reading::Done => return Ok(Some(None)),
            Reading::Length(_) | Reading::UntilClose if buf.is_empty() => return Ok(None),
            Reading::Length(left) => {
                let n = (*left).min(buf.len() as u64) as usize;
                *left -= n as u64;
                (Some(Frame::data(buf.split_to(n).freeze())), *left == 0)
            }
            Reading::UntilClose => (Some(Frame::data(buf.split().freeze())), false),
            Reading::Chunked(decoder) => match decoder.decode(buf)? {
                None => return Ok(None),
                Some(Decoded::Data(data)) => (Some(Frame::data(data)), false),
                Some(Decoded::Trailers(t)) => (Some(Frame::trailers(t)), false),
                Some(Decoded::End) => (None, true),
            },
        };
        if ended {
            self.finish();
        }
        Ok(Some(frame))
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Body for PooledBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        loop {
            match this.buffered_frame() {
                Ok(Some(frame)) => return Poll::Ready(frame.map(Ok)),
                Ok(None) => {}
                Err(e) => return this.fail(e),
            }
            let conn = this
                .conn
                .as_mut()
                .expect("a body still reading has its connection");
            // The connection's read timeout (the service's) bounds each wait.
            match ready!(conn.poll_fill(cx)) {
                Ok(0) if matches!(this.reading, Reading::UntilClose) => {
                    this.conn = None;
                    this.reading = Reading::Done;
                    return Poll::Ready(None);
                }
                Ok(0) => return this.fail(invalid("the upstream closed the connection mid-body")),
                Ok(_) => {}
                Err(e) => return this.fail(e),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.reading, Reading::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.reading {
            Reading::Length(n) => SizeHint::with_exact(n),
            Reading::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}
