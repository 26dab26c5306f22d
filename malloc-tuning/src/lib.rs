//! glibc's malloc serves every block above its mmap threshold (32 MiB at most, however it
//! adapts) with a fresh `mmap` and hands it back with `munmap` on free. A UNet training step at
//! batch 8 on 256x256 images allocates and frees activations and gradients of 33.5 MiB
//! (8x16x256x256 f32) hundreds of times, and the kernel page-faults and zeroes each one anew:
//! perf put 26% of a LibTorch step (11% of a flex step) in the kernel, mostly `exc_page_fault`
//! and `clear_page_erms`; serving them from the heap and keeping freed memory there brings that
//! to 3% (2%), and the LibTorch step to ~1.6x its speed (docs/TRAINING_SPEED.md). One libc call that
//! no crate wraps, so it is written here; it also covers LibTorch's own allocations, which a
//! Rust `#[global_allocator]` would not.
//!
//! The cost: memory freed during training stays with the process (peak RSS is unchanged, the
//! RSS no longer falls back between steps). Call it in binaries that train, first thing in
//! `main`, not in the bedside runtime.

/// Turns off malloc's mmap path, keeps freed memory in the heap (no trimming below 2 GiB free)
/// and grows the heap 256 MiB at a time. Returns whether the settings took (false on other
/// C libraries, where nothing is done).
pub fn keep_freed_memory() -> bool {
    imp::keep_freed_memory()
}

/// Gives the heap's free memory back to the system now (`malloc_trim(0)`), so that resident
/// memory is what is in use: a bench measuring one phase's peak calls it first, or the memory
/// an earlier, larger phase freed and the heap kept would count as this phase's. Returns
/// whether anything was released.
pub fn release_freed_memory() -> bool {
    imp::release_freed_memory()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod imp {
    #[allow(unsafe_code)]
    pub fn release_freed_memory() -> bool {
        // SAFETY: malloc_trim takes malloc's own locks and only returns free memory.
        unsafe { libc::malloc_trim(0) == 1 }
    }

    #[allow(unsafe_code)]
    pub fn keep_freed_memory() -> bool {
        // SAFETY: mallopt only sets malloc's tuning parameters; it takes malloc's own lock and
        // is documented as safe to call at any time. Each call returns 1 on success.
        unsafe {
            libc::mallopt(libc::M_MMAP_MAX, 0) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1
                && libc::mallopt(libc::M_TOP_PAD, 256 << 20) == 1
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    pub fn keep_freed_memory() -> bool {
        false
    }

    pub fn release_freed_memory() -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn applies_on_glibc_and_large_blocks_still_work() {
        let applied = super::keep_freed_memory();
        assert_eq!(applied, cfg!(all(target_os = "linux", target_env = "gnu")));
        // A block far above the old mmap threshold now comes from the heap; it must still be
        // usable and freeable, twice (the second reuses the first's memory).
        for _ in 0..2 {
            let mut v = vec![1u8; 64 << 20];
            v[(64 << 20) - 1] = 2;
            assert_eq!(v.iter().map(|&b| b as usize).sum::<usize>(), (64 << 20) + 1);
        }
    }
}
