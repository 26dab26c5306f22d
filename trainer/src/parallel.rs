//! Writing many files at once with progress: the phantom and the derived test domains each
//! make thousands of independent images. rayon would spread the work as well, but the
//! progress callback (a progress bar, not `Sync`) must run on the calling thread, and the
//! first error must stop the others early; this small pool does both.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

/// Runs `work` on every item on up to 8 threads, calling `on_done(done, total)` on this
/// thread after each item; stops at the first error and returns it. Results must not depend
/// on the order items are taken in (each item's output is a pure function of the item).
pub fn for_each_with_progress<T: Sync, E: Send>(
    items: &[T],
    work: impl Fn(&T) -> Result<(), E> + Sync,
    on_done: &mut dyn FnMut(usize, usize),
) -> Result<(), E> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<Result<(), E>>();
    std::thread::scope(|s| {
        for _ in 0..threads {
            let (tx, next, failed, work) = (tx.clone(), &next, &failed, &work);
            s.spawn(move || {
                while !failed.load(Ordering::Relaxed) {
                    let Some(item) = items.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        break;
                    };
                    if tx.send(work(item)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut done = 0;
        for result in rx {
            if let Err(e) = result {
                failed.store(true, Ordering::Relaxed);
                return Err(e);
            }
            done += 1;
            on_done(done, items.len());
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_is_done_once_with_progress_and_errors_stop_it() {
        let seen = std::sync::Mutex::new(Vec::new());
        let mut calls = Vec::new();
        let items: Vec<usize> = (0..50).collect();
        for_each_with_progress(
            &items,
            |&i| {
                seen.lock().unwrap().push(i);
                Ok::<(), String>(())
            },
            &mut |done, total| calls.push((done, total)),
        )
        .unwrap();
        let mut seen = seen.into_inner().unwrap();
        seen.sort();
        assert_eq!(seen, items);
        assert_eq!(calls.last(), Some(&(50, 50)));
        let err = for_each_with_progress(
            &items,
            |&i| {
                if i == 7 {
                    Err(format!("item {i}"))
                } else {
                    Ok(())
                }
            },
            &mut |_, _| {},
        )
        .unwrap_err();
        assert_eq!(err, "item 7");
    }
}
