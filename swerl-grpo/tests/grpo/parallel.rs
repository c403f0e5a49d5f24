//! Data parallelism without GPUs: ranks are threads joined by an in-memory all-reduce. Two ranks
//! taking half the prompts each must train exactly like one process taking them all (up to the
//! order of floating-point sums).

use std::sync::{Arc, Barrier, Mutex};

use anyhow::Result;
use candle_core::{CpuStorage, InplaceOp1, Layout, Tensor};
use swerl_grpo::{Communicator, LossType, ScaleRewards, StepMetrics, TrainConfig};

use crate::toy::{TargetTask, bigram_trainer};

/// Sums buffers across threads: each rank adds its values, waits, reads the total, waits.
struct Shared {
    barrier: Barrier,
    sum: Mutex<Vec<f64>>,
}

struct ThreadComm {
    rank: usize,
    world: usize,
    shared: Arc<Shared>,
}

impl ThreadComm {
    fn reduce(&self, values: &mut [f64]) {
        {
            let mut sum = self.shared.sum.lock().unwrap();
            if sum.len() != values.len() {
                sum.clear();
                sum.resize(values.len(), 0.0);
            }
        }
        self.shared.barrier.wait();
        {
            let mut sum = self.shared.sum.lock().unwrap();
            for (s, v) in sum.iter_mut().zip(values.iter()) {
                *s += *v;
            }
        }
        self.shared.barrier.wait();
        values.copy_from_slice(&self.shared.sum.lock().unwrap());
        self.shared.barrier.wait();
        if self.rank == 0 {
            self.shared.sum.lock().unwrap().clear();
        }
        self.shared.barrier.wait();
    }
}

struct Reduce<'a>(&'a ThreadComm);

impl InplaceOp1 for Reduce<'_> {
    fn name(&self) -> &'static str {
        "thread-all-reduce"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let (start, end) = layout.contiguous_offsets().expect("contiguous gradient");
        let CpuStorage::F32(data) = storage else { candle_core::bail!("f32 only") };
        let mut values: Vec<f64> = data[start..end].iter().map(|&x| f64::from(x)).collect();
        self.0.reduce(&mut values);
        for (d, v) in data[start..end].iter_mut().zip(values) {
            *d = v as f32;
        }
        Ok(())
    }
}

impl Communicator for ThreadComm {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world_size(&self) -> usize {
        self.world
    }
    fn all_reduce_sum(&self, tensor: &Tensor) -> swerl_grpo::Result<()> {
        Ok(tensor.inplace_op1(&Reduce(self))?)
    }
    fn all_reduce_f64(&self, values: &mut [f64]) -> swerl_grpo::Result<()> {
        self.reduce(values);
        Ok(())
    }
}

fn config() -> TrainConfig {
    TrainConfig {
        steps: 5,
        prompts_per_step: 4,
        group_size: 4,
        max_new_tokens: 5,
        micro_batch_size: 3,
        scale_rewards: ScaleRewards::Batch,
        loss_type: LossType::Dapo,
        beta: 0.02,
        num_iterations: 2,
        learning_rate: 0.05,
        save_steps: 0,
        seed: 9,
        ..TrainConfig::default()
    }
}

fn close(a: &StepMetrics, b: &StepMetrics) -> bool {
    let (a, b) = (
        serde_json::to_value(a.without_timings()).unwrap(),
        serde_json::to_value(b.without_timings()).unwrap(),
    );
    a.as_object().unwrap().iter().all(|(k, x)| {
        let y = &b[k];
        match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
            _ => x == y,
        }
    })
}

#[test]
fn two_ranks_train_like_one_process() -> Result<()> {
    let task = TargetTask::new(8, 5, 1.0);
    let single_dir = tempfile::tempdir()?;
    let mut single = bigram_trainer(config(), single_dir.path())?;
    let expected = single.train(&task, &mut |_| {})?.steps;

    let shared = Arc::new(Shared { barrier: Barrier::new(2), sum: Mutex::new(Vec::new()) });
    let dirs = [tempfile::tempdir()?, tempfile::tempdir()?];
    let results: Vec<(Vec<StepMetrics>, Vec<f32>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|rank| {
                let comm = ThreadComm { rank, world: 2, shared: Arc::clone(&shared) };
                let dir = dirs[rank].path().to_owned();
                let task = &task;
                s.spawn(move || {
                    let mut t =
                        bigram_trainer(config(), &dir).unwrap().with_communicator(Box::new(comm)).unwrap();
                    let steps = t.train(task, &mut |_| {}).unwrap().steps;
                    (steps, t.policy().weights())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (rank, (steps, weights)) in results.iter().enumerate() {
        for (got, want) in steps.iter().zip(&expected) {
            assert!(close(got, want), "rank {rank} step {}:\n{got:?}\nvs\n{want:?}", want.step);
        }
        for (x, y) in weights.iter().zip(single.policy().weights()) {
            assert!((x - y).abs() < 1e-4, "rank {rank}: weights differ ({x} vs {y})");
        }
    }
    // Only rank 0 writes logs.
    assert!(dirs[0].path().join("metrics.jsonl").is_file());
    assert!(!dirs[1].path().join("metrics.jsonl").exists());
    Ok(())
}
