//! Calibration statistics: the range of each activation over calibration samples, fed one
//! batch (an f32 slice) at a time.
//!
//! * [`Method::MinMax`]: the smallest and largest value seen;
//! * [`Method::Percentile`]: the range clipped at the `p`-th percentile of `|x|` (outliers
//!   beyond it saturate), from a histogram of `|x|` over `[0, R)` with [`BINS`] bins,
//!   where `R` doubles (merging pairs of bins, exactly) whenever a larger value arrives.
//!   The threshold is the upper edge of the bin where the cumulative count reaches
//!   `p%` of the values, so it is at most `R / BINS` above the exact percentile (and
//!   never above the maximum).

use crate::Error;

/// How activation ranges are computed.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub enum Method {
    /// The observed minimum and maximum.
    MinMax,
    /// The `p`-th percentile (0 < p <= 100) of the magnitudes bounds both ends.
    Percentile(f64),
}

/// Bins of the percentile histogram.
pub const BINS: usize = 4096;

/// A closed range of values.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Range {
    /// The lower end.
    pub min: f32,
    /// The upper end.
    pub max: f32,
}

/// The running statistics of one activation.
#[derive(Debug, Clone)]
pub struct Collector {
    method: Method,
    min: f32,
    max: f32,
    count: u64,
    /// Histogram of |x| over [0, width * BINS) (percentile only).
    hist: Vec<u64>,
    width: f32,
}

impl Collector {
    /// An empty collector; an error for a percentile outside (0, 100].
    pub fn new(method: Method) -> Result<Collector, Error> {
        if let Method::Percentile(p) = method {
            if !(p > 0.0 && p <= 100.0) {
                return Err(Error::Quantize(format!("percentile {p} is not in (0, 100]")));
            }
        }
        let hist = if matches!(method, Method::Percentile(_)) { vec![0; BINS] } else { Vec::new() };
        Ok(Collector { method, min: f32::INFINITY, max: f32::NEG_INFINITY, count: 0, hist, width: 0.0 })
    }

    /// Adds a batch of values; an error names the first non-finite one.
    pub fn update(&mut self, values: &[f32]) -> Result<(), Error> {
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(Error::Quantize(format!("value {} at position {i} is not finite", values[i])));
        }
        for &v in values {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        self.count += values.len() as u64;
        if self.hist.is_empty() {
            return Ok(());
        }
        let amax = self.min.abs().max(self.max.abs());
        if amax > 0.0 && self.width == 0.0 {
            // The first range: a power of two above amax, so that later doublings stay exact.
            self.width = 2f32.powi(amax.log2().floor() as i32 + 1) / BINS as f32;
        }
        while self.width > 0.0 && amax >= self.width * BINS as f32 {
            for i in 0..BINS / 2 {
                self.hist[i] = self.hist[2 * i] + self.hist[2 * i + 1];
            }
            self.hist[BINS / 2..].iter_mut().for_each(|h| *h = 0);
            self.width *= 2.0;
        }
        for &v in values {
            let bin = if self.width > 0.0 { ((v.abs() / self.width) as usize).min(BINS - 1) } else { 0 };
            self.hist[bin] += 1;
        }
        Ok(())
    }

    /// Number of values seen.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The range, `None` before any value.
    pub fn range(&self) -> Option<Range> {
        if self.count == 0 {
            return None;
        }
        let Method::Percentile(p) = self.method else {
            return Some(Range { min: self.min, max: self.max });
        };
        if self.width == 0.0 {
            return Some(Range { min: 0.0, max: 0.0 });
        }
        let need = (p / 100.0 * self.count as f64).ceil() as u64;
        let mut seen = 0u64;
        let mut t = self.min.abs().max(self.max.abs());
        for (i, h) in self.hist.iter().enumerate() {
            seen += h;
            if seen >= need {
                t = t.min((i + 1) as f32 * self.width);
                break;
            }
        }
        Some(Range { min: self.min.max(-t), max: self.max.min(t) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minmax_over_batches() {
        let mut c = Collector::new(Method::MinMax).unwrap();
        assert_eq!(c.range(), None);
        c.update(&[1.0, -2.0, 0.5]).unwrap();
        c.update(&[3.0]).unwrap();
        assert_eq!(c.range(), Some(Range { min: -2.0, max: 3.0 }));
        assert!(c.update(&[f32::NAN]).is_err());
    }

    #[test]
    fn percentile_clips_outliers_within_one_bin() {
        // 1..=10000 in two batches of growing range (the histogram doubles its range),
        // plus the negative -5000: |x| has 10001 values; the 99.9th percentile is the
        // ceil(0.999 * 10001) = 9991st smallest magnitude, which is 9990 (5000 twice).
        let mut c = Collector::new(Method::Percentile(99.9)).unwrap();
        let small: Vec<f32> = (1..=100).map(|i| i as f32).collect();
        let large: Vec<f32> = (101..=10000).map(|i| i as f32).collect();
        c.update(&small).unwrap();
        c.update(&large).unwrap();
        c.update(&[-5000.0]).unwrap();
        let r = c.range().unwrap();
        // The histogram spans [0, 16384): bins of 4, so the threshold is within 4 above 9990.
        assert!(r.max >= 9990.0 && r.max <= 9994.0, "{r:?}");
        assert_eq!(r.min, -5000.0);
        // 100% is the maximum.
        let mut c = Collector::new(Method::Percentile(100.0)).unwrap();
        c.update(&large).unwrap();
        assert_eq!(c.range().unwrap().max, 10000.0);
        assert!(Collector::new(Method::Percentile(0.0)).is_err());
        assert!(Collector::new(Method::Percentile(101.0)).is_err());
    }
}
