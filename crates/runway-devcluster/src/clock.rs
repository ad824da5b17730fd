//! Time for the dev cluster: real by default, or a virtual clock that tests
//! advance by hand so controllers' timeouts (TTL, activeDeadlineSeconds, grace
//! periods) are deterministic.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, real or virtual.
#[derive(Debug, Clone)]
pub struct Clock {
    virtual_ms: Option<Arc<AtomicI64>>,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::real()
    }
}

impl Clock {
    pub fn real() -> Clock {
        Clock { virtual_ms: None }
    }

    /// A clock that stands still at `start_ms` until [`Clock::advance`].
    pub fn virtual_at(start_ms: i64) -> Clock {
        Clock {
            virtual_ms: Some(Arc::new(AtomicI64::new(start_ms))),
        }
    }

    pub fn is_virtual(&self) -> bool {
        self.virtual_ms.is_some()
    }

    pub fn now_ms(&self) -> i64 {
        match &self.virtual_ms {
            Some(v) => v.load(Ordering::SeqCst),
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                .unwrap_or(0),
        }
    }

    /// Moves a virtual clock forward; a real clock ignores it.
    pub fn advance(&self, ms: i64) {
        if let Some(v) = &self.virtual_ms {
            v.fetch_add(ms, Ordering::SeqCst);
        }
    }

    /// RFC 3339 with second precision and `Z`, as Kubernetes writes timestamps.
    pub fn now_rfc3339(&self) -> String {
        rfc3339(self.now_ms())
    }
}

/// Formats epoch milliseconds as `YYYY-MM-DDTHH:MM:SSZ` (times outside
/// years -9999..=9999 are clamped to that range).
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000).clamp(
        jiff::Timestamp::MIN.as_second(),
        jiff::Timestamp::MAX.as_second(),
    );
    let ts = jiff::Timestamp::from_second(secs).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Parses the RFC 3339 timestamps Kubernetes uses
/// (`YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`) to epoch milliseconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    s.parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for ms in [0, 1_700_000_000_000, 951_782_400_000, 4_102_444_800_000] {
            assert_eq!(parse_rfc3339(&rfc3339(ms)), Some(ms));
        }
        assert_eq!(rfc3339(1_764_046_800_000), "2025-11-25T05:00:00Z");
        assert_eq!(
            parse_rfc3339("2025-11-25T06:00:00.250+01:00"),
            Some(1_764_046_800_250)
        );
    }

    #[test]
    fn virtual_clock_only_moves_when_advanced() {
        let c = Clock::virtual_at(1000);
        assert_eq!(c.now_ms(), 1000);
        c.advance(500);
        assert_eq!(c.now_ms(), 1500);
        assert_eq!(c.now_rfc3339(), "1970-01-01T00:00:01Z");
    }
}
