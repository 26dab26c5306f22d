//! Fitting a run's epoch count, and with it the poly learning-rate schedule, to a wall-clock
//! budget (`train --time-budget`): on a machine that is lent for minutes, or a GPU whose first
//! epoch pays for kernel tuning, the speed is unknown until the run has started. Cutting a run
//! off mid-schedule would leave the learning rate high; replanning after each epoch lets the
//! schedule decay to zero at the last epoch that fits ("budgeted training", Li et al., 2020).

use std::time::{Duration, Instant};

/// A wall-clock limit for this process's training, counted from its creation.
pub struct TimeBudget {
    limit: Duration,
    started: Instant,
}

impl TimeBudget {
    pub fn new(minutes: f64) -> Self {
        Self {
            limit: Duration::from_secs_f64(minutes.max(0.0) * 60.0),
            started: Instant::now(),
        }
    }

    /// Epochs to plan for now that `done` have finished, each taking `epoch_seconds` from now
    /// on, and never more than `max`.
    pub fn planned_epochs(&self, done: usize, max: usize, epoch_seconds: f64) -> usize {
        let left = self.limit.saturating_sub(self.started.elapsed());
        plan(done, max, left.as_secs_f64(), epoch_seconds)
    }
}

/// `done` plus the whole epochs of `epoch_seconds` that fit in `left_seconds`, at most `max`.
fn plan(done: usize, max: usize, left_seconds: f64, epoch_seconds: f64) -> usize {
    if epoch_seconds.is_nan() || epoch_seconds <= 0.0 {
        return max.max(done);
    }
    let fit = (left_seconds / epoch_seconds).floor().max(0.0);
    // `fit` can be huge for a tiny epoch; clamp before converting.
    let fit = fit.min(max as f64) as usize;
    (done + fit).min(max).max(done)
}

/// The steady length of an epoch: the median training step (the first steps of a run compile
/// and tune kernels, so a mean would overstate it) times the steps, plus what the epoch spent
/// outside its steps (validation, checkpoints).
pub fn steady_epoch_seconds(step_seconds: &[f64], steps: usize, other_seconds: f64) -> f64 {
    if step_seconds.is_empty() {
        return other_seconds;
    }
    let mut sorted = step_seconds.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2] * steps as f64 + other_seconds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_the_epochs_that_fit() {
        // 100 s left, 30 s an epoch: three more after the two done.
        assert_eq!(plan(2, 50, 100.0, 30.0), 5);
        // Never past the requested epochs.
        assert_eq!(plan(2, 4, 100.0, 30.0), 4);
        // Out of time: stop at the epochs done.
        assert_eq!(plan(7, 50, 0.0, 30.0), 7);
        assert_eq!(plan(7, 50, 10.0, 30.0), 7);
        // An epoch of no measurable length does not divide by zero.
        assert_eq!(plan(1, 9, 100.0, 0.0), 9);
    }

    #[test]
    fn steady_epoch_ignores_the_slow_first_steps() {
        // Two warm-up steps of a minute, then 0.1 s steps: the median sees the steady speed.
        let mut steps = vec![60.0, 60.0];
        steps.extend(std::iter::repeat_n(0.1, 20));
        let est = steady_epoch_seconds(&steps, 22, 5.0);
        assert!((est - (2.2 + 5.0)).abs() < 1e-9, "{est}");
        assert_eq!(steady_epoch_seconds(&[], 10, 3.0), 3.0);
    }

    #[test]
    fn a_spent_budget_plans_no_more_epochs() {
        let budget = TimeBudget::new(0.0);
        assert_eq!(budget.planned_epochs(3, 100, 1.0), 3);
        let budget = TimeBudget::new(60.0);
        assert_eq!(budget.planned_epochs(3, 100, 1.0), 100);
    }
}
