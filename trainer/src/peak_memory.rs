//! Peak resident memory of this process, per phase: Linux keeps the high-water mark (VmHWM in
//! /proc/self/status) and lets a process reset it (writing 5 to /proc/self/clear_refs), so a
//! bench can train several models in one process and still report each one's peak. No crate
//! does this (sysinfo and memory-stats read the current RSS, not a resettable peak); elsewhere
//! than on Linux both calls report nothing.

/// Resets the high-water mark to the current resident size, after handing the memory earlier
/// phases freed back to the system: the training binaries keep freed memory in the heap
/// (`medseg-malloc-tuning`), and without the trim every phase after a large one reported that
/// one's peak (measured: 2.30 GiB for every zoo member timed after unet3p).
pub fn reset_peak() -> bool {
    medseg_malloc_tuning::release_freed_memory();
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The high-water mark of resident memory since the last [`reset_peak`] (or process start), in
/// bytes; `None` where the system does not say.
pub fn peak_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_kib(&status, "VmHWM:").map(|kib| kib * 1024)
}

/// The value of a `/proc/<pid>/status` line such as `VmHWM:   123456 kB`, in KiB.
fn parse_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    let mut words = line[key.len()..].split_whitespace();
    let value = words.next()?.parse().ok()?;
    (words.next() == Some("kB")).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_parse_and_odd_ones_do_not() {
        let status = "Name:\tx\nVmPeak:\t  900 kB\nVmHWM:\t   12345 kB\nVmRSS:\t 1 kB\n";
        assert_eq!(parse_kib(status, "VmHWM:"), Some(12345));
        assert_eq!(parse_kib("VmHWM:\t12 MB\n", "VmHWM:"), None);
        assert_eq!(parse_kib("VmRSS: 1 kB\n", "VmHWM:"), None);
    }

    /// On Linux, touching 64 MiB after a reset shows in the peak.
    #[test]
    #[cfg(target_os = "linux")]
    fn the_peak_follows_an_allocation_after_a_reset() {
        assert!(reset_peak());
        let before = peak_bytes().unwrap();
        let block = vec![1u8; 64 << 20];
        std::hint::black_box(&block);
        let after = peak_bytes().unwrap();
        assert!(after >= before + (60 << 20), "{before} -> {after}");
    }
}
