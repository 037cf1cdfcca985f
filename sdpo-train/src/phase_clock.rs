//! How long a phase of a step took and how many cores it kept busy: wall-clock seconds next
//! to the process's CPU seconds (every thread's user and system time) over the same span.
//! Their ratio, logged as `cores/PHASE`, says whether a phase used the machine's cores or
//! waited on one (a per-row loop, a single-threaded operation, a host round trip).

use std::time::Instant;

/// Wall-clock and process CPU seconds of one phase (summed over its spans in a step).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PhaseTime {
    /// Wall-clock seconds.
    pub wall: f64,
    /// CPU seconds of the whole process over the same spans (0 where the platform does not
    /// report them).
    pub cpu: f64,
}

impl PhaseTime {
    /// Cores busy on average (`cpu / wall`), `None` for a phase that did not run or where
    /// CPU time is not available.
    pub fn cores(&self) -> Option<f64> {
        (self.wall > 0.0 && self.cpu > 0.0).then(|| self.cpu / self.wall)
    }

    /// This phase without `other`, a span inside it (the step without its probe).
    pub fn without(self, other: PhaseTime) -> PhaseTime {
        PhaseTime {
            wall: (self.wall - other.wall).max(0.0),
            cpu: (self.cpu - other.cpu).max(0.0),
        }
    }
}

impl std::ops::AddAssign for PhaseTime {
    fn add_assign(&mut self, other: PhaseTime) {
        self.wall += other.wall;
        self.cpu += other.cpu;
    }
}

/// A running span: started by [`Span::start`], read by [`Span::elapsed`].
#[derive(Debug, Clone, Copy)]
pub struct Span {
    wall: Instant,
    cpu: f64,
}

impl Span {
    /// Starts measuring now.
    pub fn start() -> Self {
        Self {
            wall: Instant::now(),
            cpu: process_cpu_seconds(),
        }
    }

    /// The time since [`Span::start`].
    pub fn elapsed(&self) -> PhaseTime {
        PhaseTime {
            wall: self.wall.elapsed().as_secs_f64(),
            cpu: (process_cpu_seconds() - self.cpu).max(0.0),
        }
    }
}

/// Runs `f`, adding its time to `slot`.
pub fn timed<T>(slot: &mut PhaseTime, f: impl FnOnce() -> T) -> T {
    let span = Span::start();
    let out = f();
    *slot += span.elapsed();
    out
}

/// User plus system CPU seconds of every thread of this process so far (0 where the
/// platform does not report them).
pub fn process_cpu_seconds() -> f64 {
    #[cfg(unix)]
    {
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
        // SAFETY: `getrusage` writes one `rusage` into the pointer it is given and reads
        // nothing else; the value is read only when it reports success.
        let usage = unsafe {
            if libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) != 0 {
                return 0.0;
            }
            usage.assume_init()
        };
        let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
        seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }
    #[cfg(not(unix))]
    {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_thread_counts_as_about_one_core() {
        let mut slot = PhaseTime::default();
        let sum = timed(&mut slot, || {
            let t0 = Instant::now();
            let mut x = 0u64;
            while t0.elapsed().as_millis() < 200 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
            x
        });
        std::hint::black_box(sum);
        let cores = slot.cores().expect("getrusage reports CPU time on unix");
        // One spinning thread; other test threads may add to the process's CPU time.
        assert!(cores > 0.5, "{slot:?}");
    }

    #[test]
    fn without_takes_a_span_out_and_never_goes_negative() {
        let step = PhaseTime {
            wall: 10.0,
            cpu: 18.0,
        };
        let probe = PhaseTime {
            wall: 4.0,
            cpu: 8.0,
        };
        assert_eq!(
            step.without(probe),
            PhaseTime {
                wall: 6.0,
                cpu: 10.0
            }
        );
        assert_eq!(probe.without(step), PhaseTime::default());
        assert_eq!(PhaseTime::default().cores(), None);
        assert_eq!(step.cores(), Some(1.8));
    }
}
