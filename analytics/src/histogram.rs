//! A latency histogram whose percentiles are within 5 % of the true value.
//!
//! Buckets grow by 5 % from 1 µs (bucket `i` holds latencies in `[1.05^i, 1.05^(i+1))`), so a
//! value reported from a bucket's middle is never more than 2.5 % off, and 380 buckets reach
//! past 100 s. Histograms are stored sparsely (only the buckets that were hit) and add up, so
//! per-minute histograms merge into any longer range. In memory a histogram is a flat array,
//! so merging thousands of stored ones is a pass of additions.

const GROWTH: f64 = 1.05;
const BUCKETS: u16 = 380;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Empty until the first value, then one count per bucket.
    counts: Vec<u64>,
}

fn bucket(us: u64) -> u16 {
    if us <= 1 {
        return 0;
    }
    let i = ((us as f64).ln() / GROWTH.ln()).floor();
    (i as u16).min(BUCKETS - 1)
}

/// The value a bucket stands for: the geometric middle of its range.
fn value(bucket: u16) -> f64 {
    GROWTH.powf(f64::from(bucket) + 0.5)
}

impl Histogram {
    fn slot(&mut self, bucket: u16) -> &mut u64 {
        if self.counts.is_empty() {
            self.counts = vec![0; usize::from(BUCKETS)];
        }
        &mut self.counts[usize::from(bucket.min(BUCKETS - 1))]
    }

    pub fn record(&mut self, us: u64) {
        *self.slot(bucket(us)) += 1;
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (b, n) in other.buckets() {
            *self.slot(b) += n;
        }
    }

    /// The buckets that were hit, with their counts.
    fn buckets(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        (0..BUCKETS)
            .zip(self.counts.iter().copied())
            .filter(|(_, n)| *n > 0)
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The latency (µs) at quantile `q` (0..=1), or 0 when empty.
    pub fn quantile(&self, q: f64) -> f64 {
        self.quantiles([q])[0]
    }

    /// The latencies (µs) at the quantiles `qs`, given in ascending order, in one pass over
    /// the buckets (a dashboard's series asks for three of them at each of 1,440 minutes).
    pub fn quantiles<const N: usize>(&self, qs: [f64; N]) -> [f64; N] {
        let mut out = [0.0; N];
        let total = self.count();
        if total == 0 {
            return out;
        }
        let rank = |q: f64| ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut next = 0;
        let mut seen = 0;
        for (b, n) in self.buckets() {
            seen += n;
            while next < N && seen >= rank(qs[next]) {
                out[next] = value(b);
                next += 1;
            }
            if next == N {
                break;
            }
        }
        out
    }

    /// Sparse bytes: `(bucket u16, count u32)` little-endian pairs.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (b, n) in self.buckets() {
            out.extend_from_slice(&b.to_le_bytes());
            out.extend_from_slice(&(u32::try_from(n).unwrap_or(u32::MAX)).to_le_bytes());
        }
        out
    }

    /// Adds the histogram stored in `bytes` (a trailing partial pair is ignored).
    pub fn merge_bytes(&mut self, bytes: &[u8]) {
        for pair in bytes.chunks_exact(6) {
            let b = u16::from_le_bytes([pair[0], pair[1]]);
            let n = u32::from_le_bytes([pair[2], pair[3], pair[4], pair[5]]);
            *self.slot(b) += u64::from(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_within_five_percent() {
        let mut h = Histogram::default();
        let values: Vec<u64> = (1..=10_000).map(|i| i * 37 % 100_000 + 50).collect();
        for v in &values {
            h.record(*v);
        }
        let mut sorted = values.clone();
        sorted.sort();
        let all = h.quantiles([0.5, 0.95, 0.99]);
        for (q, together) in [0.5, 0.95, 0.99].into_iter().zip(all) {
            let exact = sorted[(q * sorted.len() as f64).ceil() as usize - 1] as f64;
            let got = h.quantile(q);
            assert_eq!(got, together);
            assert!(
                (got - exact).abs() / exact <= 0.05,
                "q{q}: {got} vs {exact}"
            );
        }
    }

    #[test]
    fn histograms_merge_through_their_bytes() {
        let (mut a, mut b) = (Histogram::default(), Histogram::default());
        (1..500).for_each(|v| a.record(v));
        (500..1000).for_each(|v| b.record(v * 10));
        let mut merged = Histogram::default();
        merged.merge_bytes(&a.to_bytes());
        merged.merge_bytes(&b.to_bytes());
        a.merge(&b);
        assert_eq!(merged, a);
        assert_eq!(merged.count(), 999);
        assert_eq!(Histogram::default().quantile(0.5), 0.0);
    }
}
