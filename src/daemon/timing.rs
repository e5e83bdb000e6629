//! How long applying a plan took, split by phase, for the "wiremesh is up" and "topology
//! reloaded" log lines: the scale benchmarks read `apply_ms` from there, and the split says
//! which phase (reading the topology and planning, building the engine's peers, installing
//! routes) to look at when a large topology is slow.

use std::time::{Duration, Instant};

/// A stopwatch over the three phases of an apply. Time spent between [`ApplyTiming::prepared`]
/// and [`ApplyTiming::resume`] (opening the tun device and socket at start-up) is not counted.
#[derive(Debug, Clone, Copy)]
pub struct ApplyTiming {
    mark: Instant,
    prepare: Duration,
    engine: Duration,
    routes: Duration,
}

impl ApplyTiming {
    pub fn start() -> Self {
        Self {
            mark: Instant::now(),
            prepare: Duration::ZERO,
            engine: Duration::ZERO,
            routes: Duration::ZERO,
        }
    }

    /// The topology is read, planned and checked.
    pub fn prepared(&mut self) {
        self.prepare = self.mark.elapsed();
        self.mark = Instant::now();
    }

    /// Restarts the clock after work that is not part of applying the plan.
    pub fn resume(&mut self) {
        self.mark = Instant::now();
    }

    /// The engine holds the plan's peers.
    pub fn applied(&mut self) {
        self.engine = self.mark.elapsed();
        self.mark = Instant::now();
    }

    /// The kernel's routes match the plan; the measurement is complete.
    pub fn routed(mut self) -> Self {
        self.routes = self.mark.elapsed();
        self
    }

    pub fn prepare_ms(&self) -> f64 {
        ms(self.prepare)
    }
    pub fn engine_ms(&self) -> f64 {
        ms(self.engine)
    }
    pub fn routes_ms(&self) -> f64 {
        ms(self.routes)
    }
    pub fn total_ms(&self) -> f64 {
        ms(self.prepare + self.engine + self.routes)
    }
}

/// Milliseconds with two decimals, so log lines stay short.
fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 100_000.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_is_the_sum_of_the_phases_and_skips_the_paused_time() {
        let wall = Instant::now();
        let mut t = ApplyTiming::start();
        std::thread::sleep(Duration::from_millis(5));
        t.prepared();
        std::thread::sleep(Duration::from_millis(30));
        t.resume();
        t.applied();
        let t = t.routed();
        let wall = ms(wall.elapsed());
        assert!(t.prepare_ms() >= 5.0, "{t:?}");
        assert!(t.total_ms() <= wall - 30.0, "{t:?} within {wall} ms");
        let sum = t.prepare_ms() + t.engine_ms() + t.routes_ms();
        assert!((t.total_ms() - sum).abs() < 0.05, "{t:?}");
    }
}
