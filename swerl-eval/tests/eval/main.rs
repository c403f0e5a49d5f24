//! swerl-eval's integration tests: upstream goldens (`tests/golden`, made by
//! `tests/golden/make_golden.py` with pip's `swebench` 4.1.0 and 5.0.1) and the end-to-end
//! harness run on an in-test repository, and Agentless Mini on that repository with a scripted
//! model.

mod agentless;
mod dated;
mod e2e;
mod golden;
mod instance_cache;
mod testbed;
