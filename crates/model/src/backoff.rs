//! Exponential backoff with bounded jitter, the one retry schedule every ferry retry uses.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A retry schedule: the n-th retry waits `base × factorⁿ⁻¹`, plus up to `jitter` × that
/// at random, and never more than `cap` (the cap applies after the jitter).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    /// The wait before the first retry.
    pub base: Duration,
    /// How much each further retry multiplies the wait by (1 = a constant wait).
    pub factor: u32,
    /// The longest wait, jitter included.
    pub cap: Duration,
    /// The largest random addition, as a fraction of the wait (0 = none).
    pub jitter: f64,
}

impl Backoff {
    /// `base × factorⁿ⁻¹` up to `cap`, without jitter.
    pub const fn new(base: Duration, factor: u32, cap: Duration) -> Self {
        Self {
            base,
            factor,
            cap,
            jitter: 0.0,
        }
    }

    /// The same wait every time.
    pub const fn constant(wait: Duration) -> Self {
        Self::new(wait, 1, wait)
    }

    /// This schedule with up to `fraction` × the wait added at random.
    pub const fn with_jitter(self, fraction: f64) -> Self {
        Self {
            jitter: fraction,
            ..self
        }
    }

    /// The wait before retry number `attempt` (1 = the first retry; 0 = no wait), with
    /// a jitter drawn from [`jitter`].
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, jitter())
    }

    /// [`delay`](Self::delay) with the random fraction given: `random` in [0, 1] picks
    /// how much of the jitter is added (values outside are clamped).
    pub fn delay_with(&self, attempt: u32, random: f64) -> Duration {
        if attempt == 0 {
            return Duration::ZERO;
        }
        let cap = self.cap.as_secs_f64();
        let exponent = i32::try_from(attempt - 1).unwrap_or(i32::MAX);
        let grown = self.base.as_secs_f64() * f64::from(self.factor).powi(exponent);
        let random = if random.is_nan() {
            0.0
        } else {
            random.clamp(0.0, 1.0)
        };
        let jittered = grown.min(cap) * (1.0 + self.jitter.max(0.0) * random);
        Duration::from_secs_f64(jittered.min(cap))
    }
}

/// A pseudo-random fraction in [0, 1) from the clock's sub-second nanoseconds: enough to
/// keep many timers out of step, without a random number generator.
pub fn jitter() -> f64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    f64::from(nanos % 1000) / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn grows_by_the_factor_up_to_the_cap() {
        let b = Backoff::new(secs(5), 2, secs(180));
        let waits: Vec<u64> = (0..10).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(waits, [0, 5, 10, 20, 40, 80, 160, 180, 180, 180]);
        assert_eq!(b.delay(u32::MAX), secs(180), "no overflow");
        let constant = Backoff::constant(secs(30));
        assert_eq!(constant.delay(1), secs(30));
        assert_eq!(constant.delay(7), secs(30));
    }

    #[test]
    fn jitter_adds_at_most_its_fraction_and_never_passes_the_cap() {
        let b = Backoff::new(secs(5), 2, secs(180)).with_jitter(0.2);
        assert_eq!(b.delay_with(1, 0.0), secs(5));
        assert_eq!(b.delay_with(1, 1.0), secs(6));
        assert_eq!(b.delay_with(2, 0.5), secs(11));
        // 160 s + 20 % would be 192 s: the cap applies after the jitter.
        assert_eq!(b.delay_with(6, 1.0), secs(180));
        assert_eq!(b.delay_with(6, 0.0), secs(160));
        assert_eq!(b.delay_with(9, 1.0), secs(180));
        assert_eq!(b.delay_with(1, 7.0), secs(6), "clamped");
        assert_eq!(b.delay_with(1, f64::NAN), secs(5));
        for attempt in 1..12 {
            let plain = Backoff::new(secs(5), 2, secs(180)).delay(attempt);
            let d = b.delay(attempt);
            assert!(d >= plain && d <= secs(180), "{attempt}: {d:?}");
            assert!(d.as_secs_f64() <= plain.as_secs_f64() * 1.2 + 1e-9);
        }
    }

    #[test]
    fn random_fraction_is_in_range() {
        for _ in 0..100 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j), "{j}");
        }
    }
}
