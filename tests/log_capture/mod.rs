//! Log lines captured as the JSON subscriber writes them, for tests that check what is logged
//! (and what never is).
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use serde_json::Value;
use tracing::subscriber::DefaultGuard;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Everything logged on this thread's default subscriber while it lives, at `level` and above.
pub struct CapturedLogs {
    buffer: Buffer,
    _guard: DefaultGuard,
}

/// Captures JSON log lines from now on (until the returned value is dropped).
pub fn capture_json(level: tracing::Level) -> CapturedLogs {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(level)
        .with_writer(move || writer.clone())
        .finish();
    CapturedLogs {
        buffer,
        _guard: tracing::subscriber::set_default(subscriber),
    }
}

impl CapturedLogs {
    /// The text logged so far.
    pub fn text(&self) -> String {
        self.buffer
            .0
            .lock()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The lines logged so far, parsed.
    pub fn lines(&self) -> Vec<Value> {
        self.text()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}
