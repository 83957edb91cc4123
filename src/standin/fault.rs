//! Per-call fault injection: what a chosen call does instead of answering (a refusal, a PHP
//! fatal, an error page, a timeout or a dropped connection, before or after Chamilo applied
//! the change), so that every multi-call write can be tested with each of its calls failing.

use std::time::Duration;

/// A failure the stand-in can be told to produce instead of answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injected {
    /// HTTP 200 with Chamilo's HTML error page (a database error).
    HtmlErrorPage,
    /// HTTP 500 with an empty body (a PHP fatal).
    Fatal,
}

/// How long a [`FaultKind::Timeout`] holds its response (unless the stand-in stops first).
pub const FAULT_HOLD: Duration = Duration::from_secs(120);

/// A failure of one chosen call, queued with [`StandinHandle::inject_fault`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// Which call fails.
    pub target: FaultTarget,
    /// How it fails.
    pub kind: FaultKind,
}

impl Fault {
    /// The `n`-th call of any action from now on (1 is the next call).
    pub fn nth_call(n: u64, kind: FaultKind) -> Self {
        Self {
            target: FaultTarget::NthCall(n),
            kind,
        }
    }

    /// The `n`-th call of `action` (a REST action or SOAP operation) from now on.
    pub fn nth_of(action: impl Into<String>, n: u64, kind: FaultKind) -> Self {
        Self {
            target: FaultTarget::NthOf {
                action: action.into(),
                n,
            },
            kind,
        }
    }
}

/// Which call a [`Fault`] hits, counted from the moment it is injected, 1-based (0 counts as 1).
/// Names are the ones [`StandinHandle::calls`] counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultTarget {
    /// The n-th call of any action.
    NthCall(u64),
    /// The n-th call of this action.
    NthOf { action: String, n: u64 },
}

impl FaultTarget {
    fn n(&self) -> u64 {
        match self {
            Self::NthCall(n) | Self::NthOf { n, .. } => (*n).max(1),
        }
    }

    fn matches(&self, action: &str) -> bool {
        match self {
            Self::NthCall(_) => true,
            Self::NthOf { action: a, .. } => a == action,
        }
    }
}

/// What the hit call does instead of answering normally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// Chamilo refuses, nothing applied. REST: HTTP 200 `{"error":true,"message":…}`. SOAP:
    /// HTTP 500 with a `SOAP-ENV:Fault` (`faultcode` `Server`, `faultstring` the message), the
    /// way `registration.soap.php` refuses a wrong secret key.
    Refuse { message: String },
    /// A PHP fatal, nothing applied: HTTP 500, `text/html`, empty body.
    Fatal,
    /// Chamilo's HTML error page (a database error), HTTP 200, nothing applied.
    HtmlPage,
    /// The call is applied first if `applied`, then the response is held for [`FAULT_HOLD`]
    /// (or until the stand-in stops), and the connection is closed without one.
    Timeout { applied: bool },
    /// The call is applied first if `applied`, then the TCP connection is closed without a
    /// single byte of response.
    Drop { applied: bool },
}

impl FaultKind {
    pub(super) fn applies(&self) -> bool {
        matches!(
            self,
            Self::Timeout { applied: true } | Self::Drop { applied: true }
        )
    }
}

#[derive(Debug)]
pub(super) struct PendingFault {
    pub(super) fault: Fault,
    /// Matching calls seen since injection.
    pub(super) seen: u64,
}

/// Counts a call of `action` against the pending faults and takes the one it fires, if any.
pub(super) fn fire(faults: &mut Vec<PendingFault>, action: &str) -> Option<FaultKind> {
    let mut fired = None;
    for (i, pending) in faults.iter_mut().enumerate() {
        if !pending.fault.target.matches(action) {
            continue;
        }
        pending.seen += 1;
        if fired.is_none() && pending.seen >= pending.fault.target.n() {
            fired = Some(i);
        }
    }
    fired.map(|i| faults.remove(i).fault.kind)
}
