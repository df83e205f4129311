//! Round trip time tracking: the EWMA average and the minimum of recent samples.

use std::collections::VecDeque;
use std::time::Duration;

/// The EWMA weight of a new RTT sample.
pub const RTT_ALPHA: f64 = 0.2;
/// How many recent samples the minimum RTT is taken over.
pub const MIN_RTT_SAMPLES: usize = 10;

/// The new average RTT after `sample`: the sample itself when there is no average yet, else
/// `0.2 * sample + 0.8 * old`.
pub fn ewma(old: Option<Duration>, sample: Duration) -> Duration {
    match old {
        None => sample,
        Some(old) => Duration::from_secs_f64(
            RTT_ALPHA * sample.as_secs_f64() + (1.0 - RTT_ALPHA) * old.as_secs_f64(),
        ),
    }
}

/// Tracks one server's RTT samples (a monitor's RTT task may own one too).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RttEstimator {
    average: Option<Duration>,
    recent: VecDeque<Duration>,
}

impl RttEstimator {
    /// Adds a sample.
    pub fn add_sample(&mut self, sample: Duration) {
        self.average = Some(ewma(self.average, sample));
        if self.recent.len() == MIN_RTT_SAMPLES {
            self.recent.pop_front();
        }
        self.recent.push_back(sample);
    }

    /// The average, `None` before the first sample.
    pub fn average(&self) -> Option<Duration> {
        self.average
    }

    /// The minimum of the last 10 samples: `None` before any, zero until there are two.
    pub fn min(&self) -> Option<Duration> {
        match self.recent.len() {
            0 => None,
            1 => Some(Duration::ZERO),
            _ => self.recent.iter().min().copied(),
        }
    }

    /// Forgets everything (the server became Unknown).
    pub fn reset(&mut self) {
        self.average = None;
        self.recent.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_is_zero_until_two_samples_and_over_last_ten() {
        let mut r = RttEstimator::default();
        assert_eq!(r.min(), None);
        r.add_sample(Duration::from_millis(5));
        assert_eq!(r.min(), Some(Duration::ZERO));
        r.add_sample(Duration::from_millis(7));
        assert_eq!(r.min(), Some(Duration::from_millis(5)));
        for _ in 0..9 {
            r.add_sample(Duration::from_millis(9));
        }
        // The 5 ms sample has left the window of the last ten.
        assert_eq!(r.min(), Some(Duration::from_millis(7)));
        r.reset();
        assert_eq!(r.average(), None);
    }

    #[test]
    fn first_sample_is_the_average() {
        assert_eq!(
            ewma(None, Duration::from_millis(10)),
            Duration::from_millis(10)
        );
        let a = ewma(Some(Duration::from_millis(0)), Duration::from_millis(5));
        assert_eq!(a, Duration::from_millis(1));
    }
}
