//! Third-party code that panics on corrupt input must not take an import or a bedside run
//! down: dicom-rs 0.10's RLE Lossless reader indexes past the end of a truncated or damaged
//! fragment (found by fuzzing the importer with mutated files), and tract-onnx 0.23.9 indexes
//! a map with a graph output no node produces (found by `runtime/tests/fuzz_loaders.rs`). [`guarded`] turns such a panic into an error
//! that the caller names the file in; [`install_hook`] keeps the panic's own report off stderr
//! while it is guarded, and leaves every other panic reported as before.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};

thread_local! {
    static GUARDED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`; a panic inside it becomes an error carrying the panic's message.
pub fn guarded<T>(f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let was = GUARDED.replace(true);
    // Whatever `f` touched is dropped with the error: no state outlives a caught panic.
    let result = catch_unwind(AssertUnwindSafe(f));
    GUARDED.set(was);
    result.unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        Err(anyhow::anyhow!("failed on corrupt data ({message})"))
    })
}

/// Installs a panic hook that stays silent for panics [`guarded`] catches on this thread and
/// hands every other panic to the hook it replaces. Binaries call it once at start-up.
pub fn install_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !GUARDED.get() {
            previous(info);
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error_and_results_pass_through() {
        let err = guarded(|| {
            let v: Vec<u8> = Vec::new();
            let i = v.len() + 3;
            Ok(v[i])
        })
        .unwrap_err();
        assert!(err.to_string().contains("index out of bounds"), "{err}");
        assert_eq!(guarded(|| Ok(7)).unwrap(), 7);
        assert!(guarded::<()>(|| anyhow::bail!("plain error")).is_err());
        assert!(!GUARDED.get(), "the guard is lifted afterwards");
    }
}
