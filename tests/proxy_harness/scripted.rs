//! An upstream that writes exactly the bytes a test scripts, for framings and failures the
//! echoing upstream cannot produce.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the scripted upstream does with one request.
pub enum Reply {
    /// Write these bytes and keep the connection for the next request.
    Keep(Vec<u8>),
    /// Write these bytes and close.
    Close(Vec<u8>),
}

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub connection: usize,
    pub head: String,
    pub body: Vec<u8>,
}

type Script = dyn Fn(&str, usize) -> Reply + Send + Sync;

/// An upstream that answers each request with what `script(head, nth request on this
/// connection)` says. Request bodies are read by `Content-Length` or to the last chunk,
/// except for requests whose reply closes at once.
pub struct Scripted {
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Scripted {
    pub async fn start(script: impl Fn(&str, usize) -> Reply + Send + Sync + 'static) -> Self {
        Self::start_reading_bodies(script, true).await
    }

    pub async fn start_reading_bodies(
        script: impl Fn(&str, usize) -> Reply + Send + Sync + 'static,
        read_bodies: bool,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        let (a, s) = (accepted.clone(), seen.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let connection = a.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::spawn(serve(
                    stream,
                    connection,
                    script.clone(),
                    s.clone(),
                    read_bodies,
                ));
            }
        });
        Self {
            addr,
            accepted,
            seen,
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

async fn serve(
    mut stream: TcpStream,
    connection: usize,
    script: Arc<Script>,
    seen: Arc<Mutex<Vec<Seen>>>,
    read_bodies: bool,
) {
    let mut buf = Vec::new();
    for nth in 1.. {
        let Some(end) = read_until(&mut stream, &mut buf, b"\r\n\r\n").await else {
            return;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        buf.drain(..end);
        let mut body = Vec::new();
        if read_bodies {
            if let Some(len) = field(&head, "content-length").and_then(|v| v.parse().ok()) {
                while buf.len() < len {
                    if !read_some(&mut stream, &mut buf).await {
                        return;
                    }
                }
                body = buf.drain(..len).collect();
            } else if field(&head, "transfer-encoding").as_deref() == Some("chunked") {
                let Some(end) = read_until(&mut stream, &mut buf, b"0\r\n\r\n").await else {
                    return;
                };
                body = buf.drain(..end).collect();
            }
        }
        let reply = script(&head, nth);
        seen.lock().unwrap().push(Seen {
            connection,
            head,
            body,
        });
        match reply {
            Reply::Keep(bytes) => {
                if stream.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            Reply::Close(bytes) => {
                let _ = stream.write_all(&bytes).await;
                return;
            }
        }
    }
}

/// Reads until `buf` holds `end`; returns the length up to and including it.
async fn read_until(stream: &mut TcpStream, buf: &mut Vec<u8>, end: &[u8]) -> Option<usize> {
    loop {
        if let Some(at) = buf.windows(end.len()).position(|w| w == end) {
            return Some(at + end.len());
        }
        if !read_some(stream, buf).await {
            return None;
        }
    }
}

async fn read_some(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut piece = [0u8; 8192];
    match stream.read(&mut piece).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&piece[..n]);
            true
        }
    }
}

/// The value of field `name` (lower case) in a head as [`Seen::head`] holds it.
pub fn field(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        (n.trim() == name).then(|| v.trim().to_owned())
    })
}
