//! The stand-in's notion of "now", in whole UNIX seconds.
//!
//! Chamilo stamps every extra-field value row with `updated_at` (one-second resolution), and
//! whether a write of an unchanged value succeeds depends on that second (see
//! [`ChamiloState::save_extra_value`](super::state::ChamiloState::save_extra_value)). Tests
//! that exercise this use a manual clock and move it explicitly.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Where the stand-in reads the current second from. Cloning a manual clock shares it: moving
/// one clone moves every other (the stand-in's included).
///
/// ```
/// use chamilo_scim_proxy::standin::Clock;
/// let clock = Clock::manual(1_796_234_755);
/// let seen_by_standin = clock.clone();
/// clock.advance(1);
/// assert_eq!(seen_by_standin.now(), 1_796_234_756);
/// ```
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// Wall-clock UNIX seconds.
    #[default]
    Real,
    /// A second that only moves when told to.
    Manual(ManualClock),
}

/// The shared second of [`Clock::Manual`].
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A manual clock showing `start_secs`.
    pub fn new(start_secs: u64) -> Self {
        Self(Arc::new(AtomicU64::new(start_secs)))
    }

    /// The current second.
    pub fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    /// Moves to `secs` (backwards too).
    pub fn set(&self, secs: u64) {
        self.0.store(secs, Ordering::SeqCst);
    }

    /// Moves forward by `secs`.
    pub fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock {
    /// A manual clock showing `start_secs`.
    pub fn manual(start_secs: u64) -> Self {
        Self::Manual(ManualClock::new(start_secs))
    }

    /// The current second (UNIX time).
    pub fn now(&self) -> u64 {
        match self {
            Self::Real => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            Self::Manual(m) => m.now(),
        }
    }

    /// Whether this is a manual clock.
    pub fn is_manual(&self) -> bool {
        matches!(self, Self::Manual(_))
    }

    /// The manual clock, if this is one.
    pub fn as_manual(&self) -> Option<&ManualClock> {
        match self {
            Self::Real => None,
            Self::Manual(m) => Some(m),
        }
    }

    /// Sets a manual clock to `secs`. The real clock cannot be set: calling this on it is a
    /// bug in the test (a debug assertion), and does nothing in release builds.
    pub fn set(&self, secs: u64) {
        debug_assert!(self.is_manual(), "Clock::set on the real clock");
        if let Self::Manual(m) = self {
            m.set(secs);
        }
    }

    /// Moves a manual clock forward by `secs`; like [`Clock::set`], a bug on the real clock.
    pub fn advance(&self, secs: u64) {
        debug_assert!(self.is_manual(), "Clock::advance on the real clock");
        if let Self::Manual(m) = self {
            m.advance(secs);
        }
    }
}

impl From<ManualClock> for Clock {
    fn from(m: ManualClock) -> Self {
        Self::Manual(m)
    }
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of a UNIX second, as MariaDB shows a `DATETIME` column.
pub fn sql_datetime(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_is_shared_between_clones() {
        let c = Clock::manual(10);
        let d = c.clone();
        c.advance(5);
        assert_eq!(d.now(), 15);
        d.set(3);
        assert_eq!(c.now(), 3);
        assert!(c.is_manual());
        assert!(Clock::Real.now() > 1_700_000_000);
    }

    #[test]
    fn sql_datetime_is_utc() {
        assert_eq!(sql_datetime(1_796_234_754), "2026-12-02 18:05:54");
    }
}
