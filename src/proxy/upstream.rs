//! One request and its response on an upstream HTTP/1.1 connection, driven by the task of the
//! client's request itself: no task or channel per connection or per request.
//!
//! The request head is written in one piece; a request body streams while the response head
//! is awaited, so an upstream that answers early (a `413` to an upload) is heard. The response
//! body is read by [`ResponseBody`] straight from the socket and the connection goes back to
//! the pool when the body has been read to its end.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{Method, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::pool::{Endpoint, UpstreamPool};
use crate::body::{BoxBody, BoxError};
use crate::http1::{self as h1, poll_read_buf, Framing, H1Error, RequestFraming, ResponseHead};

/// Room kept free in a connection's read buffer before each read.
const READ_ROOM: usize = 16 * 1024;

/// `1xx` responses skipped before the final one.
const MAX_INFORMATIONAL: usize = 8;

/// Why no (complete) response came back.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connect to the upstream failed: {0}")]
    Connect(#[source] io::Error),
    #[error("connect to the upstream timed out")]
    ConnectTimeout,
    #[error("upstream connection failed: {0}")]
    Io(#[source] io::Error),
    #[error("upstream closed the connection before its response was complete")]
    Closed,
    #[error("upstream spoke invalid HTTP/1.1: {0}")]
    Protocol(#[from] H1Error),
    #[error("request body failed: {0}")]
    RequestBody(#[source] BoxError),
    #[error("request body length differs from its Content-Length")]
    RequestBodyLength,
}

/// A TCP connection to the upstream and the bytes read from it but not used yet.
#[derive(Debug)]
pub struct UpstreamConn {
    stream: TcpStream,
    buf: BytesMut,
}

impl UpstreamConn {
    /// Opens a connection (`TCP_NODELAY`: heads and small bodies go out at once).
    pub async fn connect(endpoint: &Endpoint, timeout: Duration) -> Result<Self, UpstreamError> {
        let connect = TcpStream::connect((endpoint.host.as_str(), endpoint.port));
        let stream = match tokio::time::timeout(timeout, connect).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => return Err(UpstreamError::Connect(err)),
            Err(_) => return Err(UpstreamError::ConnectTimeout),
        };
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(error = %err, "cannot set TCP_NODELAY upstream");
        }
        Ok(Self {
            stream,
            buf: BytesMut::with_capacity(READ_ROOM),
        })
    }

    /// Whether an idle connection can carry a request: nothing arrived on it while it was
    /// idle (that would be the upstream closing it, or bytes that belong to no request).
    /// Costs no system call unless the socket reports readiness.
    pub fn is_idle_and_open(&self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        match self.stream.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            // Readiness may be left over from the last read: ask the socket.
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                matches!(self.stream.try_read(&mut probe),
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }

    /// The socket and what the upstream sent after the head, for a tunnel after `101`.
    pub fn into_parts(self) -> (TcpStream, Bytes) {
        (self.stream, self.buf.freeze())
    }

    /// Sends `req` and reads the response head. On failure, tells whether the request may be
    /// sent again on another connection.
    pub(super) async fn exchange(
        &mut self,
        req: &mut OutgoingRequest,
    ) -> Result<Exchanged, ExchangeError> {
        if let Err(err) = self.stream.write_all(&req.head).await {
            // An incomplete head is no request: nothing can have been done with it.
            return Err(ExchangeError {
                error: UpstreamError::Io(err),
                unsent: true,
            });
        }
        let head_request = req.method == Method::HEAD;
        let (mut reader, mut writer) = self.stream.split();
        let buf = &mut self.buf;
        let Some(body) = req.body.take() else {
            return match read_head(&mut reader, buf, head_request).await {
                Ok(head) => Ok(Exchanged {
                    head,
                    request_complete: true,
                }),
                Err((error, nothing_received)) => Err(ExchangeError {
                    unsent: nothing_received && req.method.is_idempotent(),
                    error,
                }),
            };
        };

        let pump = pump_body(&mut writer, body, req.framing);
        let head = read_head(&mut reader, buf, head_request);
        tokio::pin!(pump, head);
        let sent = tokio::select! {
            biased;
            // The upstream answered before taking the whole body (a 413, a redirect): pass
            // the answer on; the connection cannot carry another request.
            early = &mut head => {
                return early
                    .map(|head| Exchanged { head, request_complete: false })
                    .map_err(|(error, _)| ExchangeError { error, unsent: false });
            }
            sent = &mut pump => sent,
        };
        let request_complete = match sent {
            Ok(()) => true,
            Err(err @ UpstreamError::Io(_)) => {
                // The upstream stopped reading; its answer may already be on the way.
                return head
                    .await
                    .map(|head| Exchanged {
                        head,
                        request_complete: false,
                    })
                    .map_err(|_| ExchangeError {
                        error: err,
                        unsent: false,
                    });
            }
            Err(error) => {
                return Err(ExchangeError {
                    error,
                    unsent: false,
                })
            }
        };
        head.await
            .map(|head| Exchanged {
                head,
                request_complete,
            })
            .map_err(|(error, _)| ExchangeError {
                error,
                unsent: false,
            })
    }
}

/// A request ready for the wire: its head encoded once, so that it can be sent again.
pub struct OutgoingRequest {
    head: Vec<u8>,
    method: Method,
    body: Option<BoxBody>,
    framing: RequestFraming,
}

impl OutgoingRequest {
    /// `head` is the encoded head (see [`h1::RequestHeadWriter`]); `body` is `None` exactly
    /// when `framing` is [`RequestFraming::Empty`].
    pub fn new(
        method: Method,
        head: Vec<u8>,
        body: Option<BoxBody>,
        framing: RequestFraming,
    ) -> Self {
        Self {
            head,
            method,
            body: body.filter(|_| framing != RequestFraming::Empty),
            framing,
        }
    }
}

/// The response head, and whether the whole request went out before it.
pub(super) struct Exchanged {
    pub head: ResponseHead,
    pub request_complete: bool,
}

/// A failed exchange.
pub(super) struct ExchangeError {
    pub error: UpstreamError,
    /// The upstream cannot have acted on the request: it may go out again on another
    /// connection (RFC 9110 §9.2.2).
    pub unsent: bool,
}

/// Reads until a final response head is complete; `1xx` heads before it are dropped.
/// On failure, also tells whether no byte at all came back.
async fn read_head<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    head_request: bool,
) -> Result<ResponseHead, (UpstreamError, bool)> {
    let mut received = !buf.is_empty();
    let mut informational = 0;
    loop {
        if !buf.is_empty() {
            match h1::parse_response_head(buf, head_request) {
                Ok(Some(head))
                    if head.status.is_informational()
                        && head.status != StatusCode::SWITCHING_PROTOCOLS =>
                {
                    informational += 1;
                    if informational > MAX_INFORMATIONAL {
                        return Err((H1Error::Head("too many 1xx responses").into(), false));
                    }
                    continue;
                }
                Ok(Some(head)) => return Ok(head),
                Ok(None) => {}
                Err(err) => return Err((err.into(), false)),
            }
        }
        if buf.capacity() - buf.len() < READ_ROOM / 4 {
            buf.reserve(READ_ROOM);
        }
        match tokio::io::AsyncReadExt::read_buf(reader, buf).await {
            Ok(0) => return Err((UpstreamError::Closed, !received)),
            Ok(_) => received = true,
            Err(err) => return Err((UpstreamError::Io(err), !received)),
        }
    }
}

/// Writes the request body as it arrives, chunked or as-is.
async fn pump_body<W: AsyncWrite + Unpin>(
    writer: &mut W,
    mut body: BoxBody,
    framing: RequestFraming,
) -> Result<(), UpstreamError> {
    let mut sent: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(UpstreamError::RequestBody)?;
        // Request trailers are dropped, as most proxies do.
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        sent += data.len() as u64;
        let written = match framing {
            RequestFraming::Length(n) if sent > n => return Err(UpstreamError::RequestBodyLength),
            RequestFraming::Chunked => {
                let mut chunk = h1::chunk_size_line(data.len())
                    .chain(data)
                    .chain(&b"\r\n"[..]);
                writer.write_all_buf(&mut chunk).await
            }
            _ => writer.write_all(&data).await,
        };
        written.map_err(UpstreamError::Io)?;
    }
    match framing {
        RequestFraming::Length(n) if sent != n => Err(UpstreamError::RequestBodyLength),
        RequestFraming::Chunked => writer
            .write_all(h1::LAST_CHUNK)
            .await
            .map_err(UpstreamError::Io),
        _ => Ok(()),
    }
}

/// Where a connection goes back to once its response has been read.
pub(super) struct Home {
    pub pool: Weak<UpstreamPool>,
    pub slot: usize,
    pub endpoint: Arc<Endpoint>,
}

/// Builds the client's response from an exchange on `conn`. A body-less response hands the
/// connection back at once.
pub(super) fn response(
    conn: UpstreamConn,
    exchanged: Exchanged,
    home: Home,
) -> Response<ResponseBody> {
    let ResponseHead {
        status,
        version,
        reason,
        headers,
        framing,
        keep_alive,
    } = exchanged.head;
    let reusable = keep_alive && exchanged.request_complete;
    let state = if status == StatusCode::SWITCHING_PROTOCOLS {
        State::Tunnel
    } else {
        match framing {
            Framing::Empty => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Chunked(h1::ChunkedDecoder::default()),
            Framing::UntilClose => State::UntilClose,
        }
    };
    let mut body = ResponseBody {
        conn: Some(conn),
        state,
        reusable,
        home: Some(home),
        failures: None,
    };
    if body.state == State::Done {
        body.finish();
    }
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    *resp.version_mut() = version;
    *resp.headers_mut() = headers;
    if let Some(reason) = reason.and_then(|r| hyper::ext::ReasonPhrase::try_from(r).ok()) {
        resp.extensions_mut().insert(reason);
    }
    resp
}

/// The upstream's response body, read from its connection as the client takes it. A body
/// dropped before its end (client gone) closes the connection: what is left of the response
/// would otherwise be read as the next one.
pub struct ResponseBody {
    conn: Option<UpstreamConn>,
    state: State,
    reusable: bool,
    home: Option<Home>,
    /// Counts a body that breaks off (the head has gone to the client: no status can say so).
    failures: Option<prometheus_client::metrics::counter::Counter>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Length(u64),
    Chunked(h1::ChunkedDecoder),
    UntilClose,
    /// `101`: the connection is for a tunnel, no body.
    Tunnel,
    Done,
}

impl ResponseBody {
    /// Counts in `failures` when the body breaks off.
    pub fn count_failures_in(&mut self, failures: prometheus_client::metrics::counter::Counter) {
        self.failures = Some(failures);
    }

    /// The connection after a `101 Switching Protocols`, for the tunnel.
    pub fn into_tunnel(mut self) -> Option<UpstreamConn> {
        match self.state {
            State::Tunnel => self.conn.take(),
            _ => None,
        }
    }

    /// The body is complete: the connection goes home if it can carry another request.
    fn finish(&mut self) {
        self.state = State::Done;
        let conn = self.conn.take();
        if let (Some(conn), Some(home), true) = (conn, self.home.take(), self.reusable) {
            if conn.buf.is_empty() {
                if let Some(pool) = home.pool.upgrade() {
                    pool.check_in(conn, home);
                }
            }
        }
    }

    fn fail(&mut self, err: UpstreamError) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        self.state = State::Done;
        self.conn = None;
        if let Some(failures) = &self.failures {
            failures.inc();
        }
        tracing::warn!(error = %err, "upstream response body broke off");
        Poll::Ready(Some(Err(err)))
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = UpstreamError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        let this = self.get_mut();
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            let data = match &mut this.state {
                State::Done | State::Tunnel => return Poll::Ready(None),
                State::Length(left) if !conn.buf.is_empty() => {
                    let n =
                        usize::try_from(*left).map_or(conn.buf.len(), |l| l.min(conn.buf.len()));
                    *left -= n as u64;
                    let data = conn.buf.split_to(n).freeze();
                    if *left == 0 {
                        // The connection goes home before the client has even written the
                        // last bytes.
                        this.finish();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Some(data)
                }
                State::Chunked(decoder) => match decoder.decode(&mut conn.buf) {
                    Ok(Some(data)) => Some(data),
                    Ok(None) if decoder.is_done() => {
                        this.finish();
                        return Poll::Ready(None);
                    }
                    Ok(None) => None,
                    Err(err) => return this.fail(err.into()),
                },
                State::UntilClose if !conn.buf.is_empty() => Some(conn.buf.split().freeze()),
                State::Length(_) | State::UntilClose => None,
            };
            if let Some(data) = data {
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }

            if conn.buf.capacity() - conn.buf.len() < READ_ROOM / 4 {
                conn.buf.reserve(READ_ROOM);
            }
            let read = ready!(poll_read_buf(&mut conn.stream, &mut conn.buf, cx));
            match read {
                Ok(0) if this.state == State::UntilClose => {
                    this.reusable = false;
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(0) => return this.fail(UpstreamError::Closed),
                Ok(_) => {}
                Err(err) => return this.fail(UpstreamError::Io(err)),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done | State::Tunnel)
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Length(n) => SizeHint::with_exact(n),
            State::Done | State::Tunnel => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}
