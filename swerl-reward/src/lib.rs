//! The SWE-RL reward (work in progress: see issue 2).
