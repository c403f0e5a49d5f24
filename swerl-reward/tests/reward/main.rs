//! swerl-reward's integration tests: golden vectors from CPython (`tests/golden`), property
//! tests, and a live differential test against the Python reference.

mod golden;
mod properties;
mod python;
