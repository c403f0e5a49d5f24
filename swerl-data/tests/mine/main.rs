//! Integration tests of swerl-data (one test binary, modules by topic).

mod fixtures;
mod gharchive;
mod robustness;
mod swebench_shape;
