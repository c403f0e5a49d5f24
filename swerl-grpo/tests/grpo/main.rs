//! Integration tests of swerl-grpo (one binary; one module per concern).

mod golden;
