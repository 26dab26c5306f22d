//! Cross-crate end-to-end tests live in `tests/*.rs`; they drive the built binaries.
