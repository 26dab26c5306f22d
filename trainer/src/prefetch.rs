//! Batch preparation ahead of the training step: a scoped thread prepares host batches in
//! order into a bounded channel while the training thread runs the current step. The
//! producer is the only user of the epoch's generator and prepares batches in the same
//! order as a serial loop would, so the batches are exactly the serial ones.

use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::Scope;
use std::time::{Duration, Instant};

/// The receiving end: batches in order, and how long the consumer waited for them.
pub struct Prefetch<T> {
    rx: Receiver<T>,
    waited: Duration,
}

impl<T: Send> Prefetch<T> {
    /// Starts a thread in `scope` that calls `produce` until it returns `None`, keeping at
    /// most `depth` items ready (at least one). The thread stops early when this end is
    /// dropped (an error in the training step).
    pub fn spawn<'scope, 'env>(
        scope: &'scope Scope<'scope, 'env>,
        depth: usize,
        mut produce: impl FnMut() -> Option<T> + Send + 'scope,
    ) -> Self
    where
        T: 'scope,
    {
        let (tx, rx) = sync_channel(depth.max(1));
        scope.spawn(move || {
            while let Some(item) = produce() {
                if tx.send(item).is_err() {
                    break;
                }
            }
        });
        Self {
            rx,
            waited: Duration::ZERO,
        }
    }

    /// The next item, timing the wait. `None` once the producer is done (or has panicked:
    /// the scope then re-raises the panic).
    pub fn next_item(&mut self) -> Option<T> {
        let started = Instant::now();
        let item = self.rx.recv().ok();
        self.waited += started.elapsed();
        item
    }

    /// Total time spent waiting in [`Prefetch::next_item`].
    pub fn waited(&self) -> Duration {
        self.waited
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::augment::Pipeline;
    use crate::data::LoadedSplit;
    use crate::source::{DataSource, HostBatch, Labelled};

    #[test]
    fn items_arrive_in_order_and_the_producer_stops_when_dropped() {
        let got: Vec<u32> = std::thread::scope(|s| {
            let mut n = 0;
            let mut p = Prefetch::spawn(s, 2, move || {
                n += 1;
                (n <= 5).then_some(n)
            });
            std::iter::from_fn(|| p.next_item()).collect()
        });
        assert_eq!(got, vec![1, 2, 3, 4, 5]);
        // An endless producer ends when the receiver goes (the scope would hang otherwise).
        std::thread::scope(|s| {
            let mut p = Prefetch::spawn(s, 1, || Some(0u8));
            assert_eq!(p.next_item(), Some(0));
        });
    }

    /// The training loop's use: the epoch generator moves into the producer, which prepares
    /// the batches of the shuffled order one after another. Same batches as a serial loop.
    #[test]
    fn prefetched_batches_are_the_serial_ones() {
        let side = 16;
        let split = LoadedSplit {
            inputs: (0..5)
                .map(|i| {
                    (0..side * side)
                        .map(|p| ((p * (i + 3)) % 11) as f32 * 0.2 - 1.0)
                        .collect()
                })
                .collect(),
            targets: (0..5)
                .map(|i| {
                    (0..side * side)
                        .map(|p| u8::from(p % (5 + i) == 0))
                        .collect()
                })
                .collect(),
            originals: Vec::new(),
            spacings: vec![None; 5],
            patients: vec!["p".into(); 5],
        };
        let spec = crate::augment::test_util::spec(1);
        let spec = medseg_runtime::InputSpec {
            width: side,
            height: side,
            ..spec
        };
        let augment = Pipeline::preset("strong").unwrap();
        let source = Labelled {
            split: &split,
            spec: &spec,
            crop: 8,
            classes: 2,
            augment: &augment,
        };
        let order = [3usize, 0, 4, 1, 2];
        let serial: Vec<HostBatch> = {
            let mut rng = ChaCha8Rng::seed_from_u64(11);
            order
                .chunks(2)
                .map(|b| DataSource::<Flex>::prepare(&source, b, &mut rng))
                .collect()
        };
        let ahead: Vec<HostBatch> = std::thread::scope(|s| {
            let mut rng = ChaCha8Rng::seed_from_u64(11);
            let mut chunks = order.chunks(2);
            let source = &source;
            let mut p = Prefetch::spawn(s, 2, move || {
                let b = chunks.next()?;
                Some(DataSource::<Flex>::prepare(source, b, &mut rng))
            });
            std::iter::from_fn(|| p.next_item()).collect()
        });
        assert_eq!(ahead, serial);
    }
}
