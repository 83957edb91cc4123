//! The express lane: plain-TCP HTTP/1.1 connections served by the proxy's own loop for as
//! long as their requests are plain pass-through ones, which is nearly all of a Chamilo
//! site's traffic (pages, scripts, images, form posts): no body, or a body of one
//! `Content-Length` read straight from the connection (`body.rs`). At the first request that
//! is anything else — a chunked body, `Expect`, an upgrade, HTTP/1.0, a SCIM or rejected
//! target, a malformed head — hyper's server takes the connection over for the rest of its
//! life, starting with that request's bytes, and answers exactly as it would have from the
//! start.
//!
//! Why: hyper's server machinery (its dispatcher, message state and encoders around each
//! request) was about 40 % of the proxy's CPU time per pass-through request, more than the
//! forwarding itself. Here a request costs one read, one parse into `http` types, the
//! pass-through, and one write of the head with the body when the body is there at once.

mod body;
pub mod head;

use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes, BytesMut};
use futures_util::FutureExt as _;
use http::{Method, Response};
use http_body::Body as _;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use self::body::ClientBody;
use self::head::{BodyFraming, ExpressRequest, NotServed};
use super::dispatch::Dispatcher;
use super::drain::{DrainProbe, DrainWatch};
use super::hyper_lane::serve_http1;
use super::io::Prefixed;
use super::metrics::HandoverLabel;
use super::route::{classify, Route};
use crate::body::BoxBody;
use crate::http1::{chunk_size_line, LAST_CHUNK};
use crate::proxy::ClientInfo;
use crate::timer::Deadline;

/// Room kept free in the read buffer before each read.
const READ_ROOM: usize = 8 * 1024;

/// Serves a plain HTTP/1.1 connection until it closes, the drain ends it, or hyper takes over.
pub(super) async fn serve(
    mut stream: TcpStream,
    client: ClientInfo,
    dispatcher: Arc<Dispatcher>,
    header_wait: Duration,
    drain: DrainWatch,
) {
    let mut buf = BytesMut::with_capacity(READ_ROOM);
    let mut out = Vec::with_capacity(1024);
    let mut probe = drain.probe();
    let mut served = false;
    loop {
        let next = next_request(&mut stream, &mut buf, header_wait, &mut probe, served).await;
        let express = match next {
            Next::Request(express) => express,
            Next::Hyper(reason) => {
                let hyper = Handover::new(stream, client, dispatcher, header_wait, drain);
                return hyper.serve(buf.freeze(), reason).await;
            }
            Next::TooLarge(status) => {
                tracing::debug!(peer = %client.peer, %status, "request head too large");
                return refuse(stream, &mut out, status).await;
            }
            Next::Closed => return,
        };
        let ExpressRequest {
            request,
            close,
            body_length,
            head,
        } = express;
        let path = match classify(request.uri()) {
            Route::PassThrough { path } => path,
            route => {
                drop(request);
                head::restore(&mut buf, &head);
                let reason = match route {
                    Route::Scim { .. } => "scim route",
                    _ => "rejected target",
                };
                let hyper = Handover::new(stream, client, dispatcher, header_wait, drain);
                return hyper.serve(buf.freeze(), reason).await;
            }
        };
        drop(head);
        let head_request = request.method() == Method::HEAD;
        let mut body_left = 0;
        let response = if body_length == 0 {
            let request = request.map(|()| ClientBody::none());
            dispatcher.pass_through(request, client, path).await
        } else {
            // The body reads from the connection itself while the request goes upstream.
            let (body, home) = ClientBody::lend(stream, std::mem::take(&mut buf), body_length);
            let response = dispatcher
                .pass_through(request.map(|()| body), client, path)
                .await;
            // The body has ended or was dropped by now: the request is over.
            let lent = home.lock().unwrap_or_else(|e| e.into_inner()).take();
            let Some(lent) = lent else {
                tracing::error!(peer = %client.peer, "request body outlived its request; connection dropped");
                return;
            };
            stream = lent.stream;
            buf = lent.buf;
            body_left = lent.left;
            response
        };
        // What is left of an unread body cannot be told from the next request.
        let close = close || body_left > 0 || drain.has_begun();
        served = true;
        match respond(&mut stream, &mut out, response, head_request, close).await {
            Ok(()) if !close => {}
            Ok(()) if body_left > 0 => return linger_close(stream).await,
            Ok(()) => {
                let _ = stream.shutdown().await;
                return;
            }
            Err(e) => {
                tracing::debug!(peer = %client.peer, error = %e, "connection ended with an error");
                return;
            }
        }
    }
}

/// A connection on its way to hyper's server, with what it needs there.
struct Handover {
    stream: TcpStream,
    client: ClientInfo,
    dispatcher: Arc<Dispatcher>,
    header_wait: Duration,
    drain: DrainWatch,
}

impl Handover {
    fn new(
        stream: TcpStream,
        client: ClientInfo,
        dispatcher: Arc<Dispatcher>,
        header_wait: Duration,
        drain: DrainWatch,
    ) -> Self {
        Self {
            stream,
            client,
            dispatcher,
            header_wait,
            drain,
        }
    }

    /// hyper serves the rest of the connection, starting with `read`, the bytes the lane
    /// has read and not served (the request it does not serve, and any after it).
    async fn serve(self, read: Bytes, reason: &'static str) {
        let metrics = self.dispatcher.metrics();
        metrics
            .handovers
            .get_or_create(&HandoverLabel { reason })
            .inc();
        tracing::trace!(peer = %self.client.peer, reason, "connection handed to hyper");
        let io = Prefixed::new(self.stream, read);
        serve_http1(
            io,
            self.client,
            self.dispatcher,
            self.header_wait,
            self.drain,
            true,
        )
        .await
    }
}

/// What comes next on a connection. (Its large variant is moved once per request; a box
/// would cost an allocation per request.)
#[allow(clippy::large_enum_variant)]
enum Next {
    Request(ExpressRequest),
    /// A request the lane does not serve, for this reason; its bytes are still in the buffer.
    Hyper(&'static str),
    /// A request head longer than the lane (or hyper) accepts, and the status to refuse it.
    TooLarge(http::StatusCode),
    /// The client closed, went silent past the header-read timeout, or the drain began
    /// while the connection was idle.
    Closed,
}

/// Reads until a whole request head is in `buf`; the header-read timeout runs from the
/// start, idle keep-alive time included. When the drain begins, the connection closes if it
/// is idle; so does a connection that has `served` requests and has only part of the next
/// head, while the first request of a connection is served once it has begun to arrive
/// (hyper's server draws the same lines).
async fn next_request(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    header_wait: Duration,
    drain: &mut DrainProbe,
    served: bool,
) -> Next {
    let mut deadline: Option<Deadline> = None;
    loop {
        if !buf.is_empty() {
            match head::parse_request_head(buf) {
                Ok(Some(express)) => return Next::Request(express),
                Ok(None) => {}
                Err(NotServed::ToHyper(reason)) => return Next::Hyper(reason),
                Err(NotServed::TooLarge(status)) => return Next::TooLarge(status),
            }
        }
        let deadline = deadline.get_or_insert_with(|| Deadline::after(header_wait));
        if buf.capacity() - buf.len() < READ_ROOM / 4 {
            buf.reserve(READ_ROOM);
        }
        let closable = served || buf.is_empty();
        let read = tokio::select! {
            biased;
            _ = std::future::poll_fn(|cx| drain.poll_begun(cx)), if closable => return Next::Closed,
            _ = &mut *deadline => {
                tracing::debug!("no request within header_read_timeout");
                return Next::Closed;
            }
            read = stream.read_buf(buf) => read,
        };
        match read {
            Ok(0) | Err(_) => return Next::Closed,
            Ok(_) => {}
        }
    }
}

/// Writes `response`. The head and the first body frame, when it is ready at once, go out
/// in one write; a 69-byte page costs one system call.
async fn respond(
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
    response: Response<BoxBody>,
    head_request: bool,
    close: bool,
) -> io::Result<()> {
    let (parts, mut body) = response.into_parts();
    let framing = head::BodyFraming::of(
        head_request,
        parts.status,
        &parts.headers,
        body.size_hint().exact(),
    );
    let reason = parts
        .extensions
        .get::<hyper::ext::ReasonPhrase>()
        .map(|r| r.as_bytes());
    out.clear();
    head::write_response_head(
        out,
        parts.status,
        reason,
        &parts.headers,
        framing,
        close,
        http_date,
    );
    if framing == BodyFraming::None {
        return stream.write_all(out).await;
    }

    let chunked = framing == BodyFraming::Chunked;
    let mut head_sent = false;
    let mut sent: u64 = 0;
    loop {
        let frame = if head_sent {
            body.frame().await
        } else if let Some(frame) = body.frame().now_or_never() {
            frame
        } else {
            // The body is not there yet: the client gets the head meanwhile.
            stream.write_all(out).await?;
            head_sent = true;
            continue;
        };
        let data = match frame {
            None => break,
            Some(Err(e)) => return Err(io::Error::other(e)),
            // Trailers are dropped, as on the way in.
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if !data.is_empty() => data,
                _ => continue,
            },
        };
        sent += data.len() as u64;
        if matches!(framing, BodyFraming::Length(n) if sent > n) {
            return Err(io::Error::other("response body longer than its length"));
        }
        // Head (the first time), chunk framing and data in one vectored write, no copy.
        let head = if head_sent { &[][..] } else { &out[..] };
        if chunked {
            let mut bufs = Buf::chain(head, chunk_size_line(data.len()))
                .chain(data)
                .chain(&b"\r\n"[..]);
            stream.write_all_buf(&mut bufs).await?;
        } else {
            stream.write_all_buf(&mut Buf::chain(head, data)).await?;
        }
        head_sent = true;
    }
    if let BodyFraming::Length(n) = framing {
        if sent != n {
            return Err(io::Error::other("response body shorter than its length"));
        }
    }
    let head = if head_sent { &[][..] } else { &out[..] };
    if chunked {
        stream
            .write_all_buf(&mut Buf::chain(head, LAST_CHUNK))
            .await
    } else if !head_sent {
        stream.write_all(head).await
    } else {
        Ok(())
    }
}

/// Answers a head the lane refuses outright with `status`, and closes.
async fn refuse(mut stream: TcpStream, out: &mut Vec<u8>, status: http::StatusCode) {
    let Ok(refusal) = Response::builder()
        .status(status)
        .body(crate::body::empty())
    else {
        return;
    };
    if respond(&mut stream, out, refusal, false, true)
        .await
        .is_ok()
    {
        linger_close(stream).await;
    }
}

/// How long, and how many bytes, a connection closed with unread input is still read from.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1024 * 1024;

/// Closes a connection whose client may still be sending (an upload answered early, a head
/// too large): the answer is followed by the end of the stream, then what the client sends
/// meanwhile is read and dropped for a moment. Closing with unread input would reset the
/// connection, and a reset can destroy the answer before the client has read it.
async fn linger_close(mut stream: TcpStream) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let mut sink = vec![0u8; 16 * 1024];
    let discard = async {
        let mut total = 0;
        while total < LINGER_BYTES {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, discard).await;
}

/// The `Date` field's value for now, made once a second per thread.
fn http_date() -> Bytes {
    thread_local! {
        static CACHED: std::cell::RefCell<(u64, Bytes)> = const {
            std::cell::RefCell::new((u64::MAX, Bytes::new()))
        };
    }
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHED.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != second {
            *cached = (second, Bytes::from(httpdate::fmt_http_date(now)));
        }
        cached.1.clone()
    })
}
