//! The calling thread joins rayon's global pool (its own test binary: the pool is
//! process-wide and can be built once).

use rayon::prelude::*;

#[test]
fn the_calling_thread_becomes_worker_zero_and_parallel_work_still_splits() {
    assert_eq!(rayon::current_thread_index(), None);
    sdpo_core::threads::adopt_calling_thread().expect("no pool exists yet");
    assert_eq!(rayon::current_thread_index(), Some(0));
    let sum: u64 = (0..1_000_000u64).into_par_iter().sum();
    assert_eq!(sum, 999_999 * 1_000_000 / 2);
    // A second call finds the pool built and says so; the pool keeps working.
    assert!(sdpo_core::threads::adopt_calling_thread().is_err());
    let seen: std::collections::BTreeSet<usize> = (0..64)
        .into_par_iter()
        .map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(2));
            rayon::current_thread_index().expect("runs in the pool")
        })
        .collect();
    assert!(seen.contains(&0), "the calling thread works too: {seen:?}");
}
