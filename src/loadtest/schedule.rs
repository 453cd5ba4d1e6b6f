//! When each request of an open-model run is due. A run's arrival rate
//! is a function of time (constant, a ramp, a spike: `stress` runs its steps
//! as runs of their own); the n-th request is due when the integral of the
//! rate reaches n, whatever the server is doing. Latency is measured from that intended time, so a
//! server that stalls is charged for every request it delayed (the
//! coordinated omission wrk2 corrects, and closed-model tools such as wrk
//! and k6's default executor make).

use std::time::Duration;

/// How the arrival rate (requests per second) changes over a run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Shape {
    /// `rate` for the whole run.
    Constant { rate: f64 },
    /// From `from` to `to` linearly over `ramp`, then `to`.
    Ramp { from: f64, to: f64, ramp: Duration },
    /// `base`, with `peak` from `at` for `length`.
    Spike {
        base: f64,
        peak: f64,
        at: Duration,
        length: Duration,
    },
    /// From `start`, each stage moving linearly to its rate over its
    /// length (a stage of length 0 jumps), then the last rate: k6's
    /// `ramping-arrival-rate` stages.
    Stages { start: f64, stages: Vec<Stage> },
}

/// One stage of [`Shape::Stages`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Stage {
    pub length: Duration,
    /// The rate at the stage's end.
    pub rate: f64,
}

impl Shape {
    /// Requests per second due at `t` into the run.
    pub(crate) fn rate_at(&self, t: Duration) -> f64 {
        let seconds = t.as_secs_f64();
        match *self {
            Shape::Constant { rate } => rate,
            Shape::Stages { start, ref stages } => stages_rate_at(start, stages, t),
            Shape::Ramp { from, to, ramp } => {
                let progress = (seconds / ramp.as_secs_f64().max(f64::EPSILON)).min(1.0);
                from + (to - from) * progress
            }
            Shape::Spike {
                base,
                peak,
                at,
                length,
            } => {
                if t >= at && t < at + length {
                    peak
                } else {
                    base
                }
            }
        }
    }

    /// The highest rate of the shape.
    pub(crate) fn peak(&self) -> f64 {
        match self {
            Shape::Constant { rate } => *rate,
            Shape::Ramp { from, to, .. } => from.max(*to),
            Shape::Spike { base, peak, .. } => base.max(*peak),
            Shape::Stages { start, stages } => {
                stages.iter().map(|stage| stage.rate).fold(*start, f64::max)
            }
        }
    }

    /// The same shape at `factor` times the rate (one connection's share).
    pub(crate) fn scaled(&self, factor: f64) -> Shape {
        match *self {
            Shape::Stages { start, ref stages } => Shape::Stages {
                start: start * factor,
                stages: stages
                    .iter()
                    .map(|stage| Stage {
                        length: stage.length,
                        rate: stage.rate * factor,
                    })
                    .collect(),
            },
            Shape::Constant { rate } => Shape::Constant {
                rate: rate * factor,
            },
            Shape::Ramp { from, to, ramp } => Shape::Ramp {
                from: from * factor,
                to: to * factor,
                ramp,
            },
            Shape::Spike {
                base,
                peak,
                at,
                length,
            } => Shape::Spike {
                base: base * factor,
                peak: peak * factor,
                at,
                length,
            },
        }
    }
}

fn stages_rate_at(start: f64, stages: &[Stage], t: Duration) -> f64 {
    let mut from = start;
    let mut begins = Duration::ZERO;
    for stage in stages {
        let ends = begins + stage.length;
        if t < ends {
            let progress = (t - begins).as_secs_f64() / stage.length.as_secs_f64();
            return from + (stage.rate - from) * progress;
        }
        from = stage.rate;
        begins = ends;
    }
    from
}

/// The times requests are due, from the start of a run to `length`: the
/// n-th when the rate's integral reaches n. Integrated in steps of at
/// most 1 ms, exact for the piecewise-constant shapes.
pub(crate) struct Arrivals {
    shape: Shape,
    length: Duration,
    /// Where the integration is, and the requests owed up to it.
    at: Duration,
    owed: f64,
}

impl Arrivals {
    #[cfg(test)]
    pub(crate) fn new(shape: Shape, length: Duration) -> Arrivals {
        Arrivals::with_phase(shape, length, 0.0)
    }

    /// As [`Arrivals::new`], with `phase` (0..1) of a request already owed
    /// at the start: the lanes of a run start staggered, not together.
    pub(crate) fn with_phase(shape: Shape, length: Duration, phase: f64) -> Arrivals {
        Arrivals {
            shape,
            length,
            at: Duration::ZERO,
            owed: phase.clamp(0.0, 0.999_999),
        }
    }
}

const STEP: Duration = Duration::from_millis(1);

impl Iterator for Arrivals {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        loop {
            if self.at >= self.length {
                return None;
            }
            let rate = self.shape.rate_at(self.at).max(0.0);
            if self.owed < 1.0 && rate > 0.0 {
                // Time to reach one request at this rate, within this step.
                let needed = (1.0 - self.owed) / rate;
                if needed <= STEP.as_secs_f64() {
                    let due = self.at + Duration::from_secs_f64(needed);
                    self.at = due;
                    self.owed = 0.0;
                    return (due < self.length).then_some(due);
                }
            }
            self.owed += rate * STEP.as_secs_f64();
            self.at += STEP;
            if self.owed >= 1.0 {
                self.owed -= 1.0;
                return (self.at < self.length).then_some(self.at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn per_second(shape: Shape, seconds: u64) -> Vec<usize> {
        let mut counts = vec![0; seconds as usize];
        for due in Arrivals::new(shape, Duration::from_secs(seconds)) {
            counts[due.as_secs() as usize] += 1;
        }
        counts
    }

    fn near(count: usize, wanted: f64) -> bool {
        (count as f64 - wanted).abs() <= wanted * 0.01 + 1.0
    }

    #[test]
    fn a_constant_rate_arrives_evenly() {
        let counts = per_second(Shape::Constant { rate: 1000.0 }, 3);
        assert!(
            counts.iter().all(|&count| near(count, 1000.0)),
            "{counts:?}"
        );
        let gaps: Vec<Duration> =
            Arrivals::new(Shape::Constant { rate: 100.0 }, Duration::from_millis(100))
                .collect::<Vec<_>>()
                .windows(2)
                .map(|pair| pair[1] - pair[0])
                .collect();
        assert!(
            gaps.iter().all(|gap| gap.as_micros().abs_diff(10_000) <= 1),
            "{gaps:?}"
        );
    }

    #[test]
    fn a_ramp_rises_linearly_and_holds() {
        let shape = Shape::Ramp {
            from: 0.0,
            to: 1000.0,
            ramp: Duration::from_secs(4),
        };
        let counts = per_second(shape, 6);
        for (second, wanted) in [125.0, 375.0, 625.0, 875.0, 1000.0, 1000.0]
            .iter()
            .enumerate()
        {
            assert!(near(counts[second], *wanted), "{counts:?}");
        }
    }

    #[test]
    fn a_spike_has_its_shape() {
        let spike = Shape::Spike {
            base: 100.0,
            peak: 2000.0,
            at: Duration::from_secs(1),
            length: Duration::from_secs(1),
        };
        let counts = per_second(spike, 3);
        assert!(near(counts[0], 100.0) && near(counts[1], 2000.0) && near(counts[2], 100.0));
    }

    #[test]
    fn stages_ramp_jump_and_hold() {
        let stages = Shape::Stages {
            start: 100.0,
            stages: vec![
                Stage {
                    length: Duration::from_secs(2),
                    rate: 300.0,
                },
                Stage {
                    length: Duration::ZERO,
                    rate: 1000.0,
                },
                Stage {
                    length: Duration::from_secs(1),
                    rate: 1000.0,
                },
                Stage {
                    length: Duration::ZERO,
                    rate: 100.0,
                },
            ],
        };
        assert_eq!(stages.peak(), 1000.0);
        let counts = per_second(stages, 5);
        for (second, wanted) in [150.0, 250.0, 1000.0, 100.0, 100.0].iter().enumerate() {
            assert!(near(counts[second], *wanted), "{counts:?}");
        }
    }

    #[test]
    fn a_lane_gets_its_share_staggered() {
        let shape = Shape::Constant { rate: 400.0 }.scaled(0.25);
        let first = Arrivals::with_phase(shape.clone(), Duration::from_secs(1), 0.5)
            .next()
            .expect("one arrival");
        assert_eq!(first.as_millis(), 5, "half an interval of 10 ms");
        assert_eq!(
            Arrivals::with_phase(shape, Duration::from_secs(1), 0.5).count(),
            100
        );
    }

    #[test]
    fn a_rate_of_zero_sends_nothing_and_ends() {
        assert_eq!(
            Arrivals::new(Shape::Constant { rate: 0.0 }, Duration::from_secs(2)).count(),
            0
        );
    }
}
