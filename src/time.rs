//! Deadlines: the facade's one type for "until when may this call block".
//!
//! Callers give durations (`*_timeout`), nothing (block), or ask not to
//! block at all (`try_*`); each becomes a [`Deadline`] at the API's edge and
//! travels as one down to the call that blocks: a poll on a socket takes
//! its [`instant`](Deadline::instant), and an algorithm of `core` takes it
//! on the park clock ([`core`](Deadline::core)).

use crate::os::Os;
use std::time::{Duration, Instant};

/// When a blocking call gives up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Deadline {
    /// Never: block as long as it takes.
    Never,
    /// Already: look once, do not block (the `try_` forms).
    Passed,
    /// At this moment.
    At(Instant),
}

#[cfg_attr(not(mp_transfer), allow(dead_code))]
impl Deadline {
    /// Block as long as it takes.
    pub(crate) const NEVER: Deadline = Deadline::Never;

    /// `timeout` from now; [`NEVER`](Self::NEVER) when that is past what the
    /// clock can hold (`Duration::MAX` means "as long as it takes", not a
    /// panic).
    #[inline]
    pub(crate) fn after(timeout: Duration) -> Deadline {
        Instant::now().checked_add(timeout).map_or(Deadline::Never, Deadline::At)
    }

    /// Already passed: for the `try_` forms.
    #[inline]
    pub(crate) fn now() -> Deadline {
        Deadline::Passed
    }

    /// The moment, for a poll (`None`: never).
    #[inline]
    pub(crate) fn instant(self) -> Option<Instant> {
        match self {
            Deadline::Never => None,
            Deadline::Passed => Some(Instant::now()),
            Deadline::At(t) => Some(t),
        }
    }

    /// The time left (`None`: no limit; zero once passed).
    #[inline]
    pub(crate) fn left(self) -> Option<Duration> {
        self.instant().map(|t| t.saturating_duration_since(Instant::now()))
    }

    /// Whether it has passed.
    #[inline]
    pub(crate) fn passed(self) -> bool {
        match self {
            Deadline::Never => false,
            Deadline::Passed => true,
            Deadline::At(t) => t <= Instant::now(),
        }
    }

    /// The earlier of two deadlines.
    #[inline]
    pub(crate) fn min(self, other: Deadline) -> Deadline {
        match (self, other) {
            (Deadline::Never, d) | (d, Deadline::Never) => d,
            (Deadline::Passed, _) | (_, Deadline::Passed) => Deadline::Passed,
            (Deadline::At(a), Deadline::At(b)) => Deadline::At(a.min(b)),
        }
    }

    /// The same deadline on `core`'s park clock.
    #[inline]
    pub(crate) fn core(self) -> multiproc_core::Deadline {
        match self {
            Deadline::Never => multiproc_core::Deadline::NEVER,
            Deadline::Passed => multiproc_core::Deadline::PASSED,
            Deadline::At(t) => {
                multiproc_core::Deadline::after(&Os, t.saturating_duration_since(Instant::now()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_order_and_convert() {
        assert_eq!(Deadline::after(Duration::MAX), Deadline::NEVER);
        assert!(!Deadline::NEVER.passed() && Deadline::now().passed());
        let soon = Deadline::after(Duration::from_millis(10));
        assert_eq!(soon.min(Deadline::NEVER), soon);
        assert_eq!(Deadline::NEVER.min(soon), soon);
        assert_eq!(soon.min(Deadline::now()), Deadline::Passed);
        assert!(Deadline::NEVER.instant().is_none());
        assert!(!Deadline::after(Duration::from_secs(60)).passed());
    }
}
