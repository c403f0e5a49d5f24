//! swerl-reward's integration tests: golden vectors from CPython (`tests/golden`), property
//! tests, a live differential test against the Python reference, and snapshots of the texts
//! the crate renders (the prompt, a patch).

mod golden;
mod properties;
mod python;
mod snapshots;
