//! Integration tests of swerl-model: real formats written in-test, numbers against PyTorch.

mod fixtures;
mod generation;
mod golden;
mod loading;
mod training;
