//! NCCL all-reduce through cudarc (re-exported by candle-core), one process per GPU.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use candle_core::cuda_backend::cudarc::nccl::safe::{Comm, Id, ReduceOp};
use candle_core::{CpuStorage, CudaStorage, DType, Device, InplaceOp1, Layout, Tensor};

use super::{Communicator, RankInfo, rendezvous_broadcast};
use crate::error::{Error, Result};

/// Gradient and metric all-reduce over NCCL. Built on candle's own CUDA stream so collectives are
/// ordered with candle's kernels. A watchdog thread reports (through `tracing`) any collective
/// that has not completed within the timeout, naming this rank and the operation, and then ends
/// the process: a hung collective cannot be recovered, only diagnosed.
pub struct NcclCommunicator {
    comm: Comm,
    device: Device,
    rank: usize,
    world: usize,
    in_flight: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    started: Instant,
}

impl std::fmt::Debug for NcclCommunicator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NcclCommunicator").field("rank", &self.rank).field("world", &self.world).finish()
    }
}

impl NcclCommunicator {
    /// Joins the job described by `info` on `device` (a CUDA device): rank 0 creates the NCCL id
    /// and hands it out through the TCP rendezvous; every rank then builds its communicator.
    pub fn init(info: &RankInfo, device: &Device, timeout: Duration) -> Result<Self> {
        let err = |message: String| Error::Communicator { rank: info.rank, world: info.world_size, message };
        let cuda = device.as_cuda_device().map_err(|e| err(format!("not a CUDA device: {e}")))?;
        let payload = if info.rank == 0 {
            let id = Id::new().map_err(|e| err(format!("ncclGetUniqueId: {e:?}")))?;
            Some(id.internal().iter().map(|&c| c as u8).collect::<Vec<u8>>())
        } else {
            None
        };
        let bytes = rendezvous_broadcast(info, payload.as_deref(), timeout)?;
        if bytes.len() != 128 {
            return Err(err(format!("NCCL id of {} bytes (expected 128)", bytes.len())));
        }
        let mut internal = [0 as std::ffi::c_char; 128];
        for (dst, src) in internal.iter_mut().zip(&bytes) {
            *dst = *src as std::ffi::c_char;
        }
        let comm = Comm::from_rank(cuda.cuda_stream(), info.rank, info.world_size, Id::uninit(internal))
            .map_err(|e| err(format!("ncclCommInitRank: {e:?}")))?;
        let in_flight = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        spawn_watchdog(
            info.rank,
            info.world_size,
            timeout,
            started,
            Arc::clone(&in_flight),
            Arc::clone(&stop),
        );
        Ok(Self {
            comm,
            device: device.clone(),
            rank: info.rank,
            world: info.world_size,
            in_flight,
            stop,
            started,
        })
    }

    fn guarded<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let since = self.started.elapsed().as_millis() as u64 + 1;
        self.in_flight.store(since, Ordering::SeqCst);
        let out = f().and_then(|v| {
            self.device.synchronize()?;
            Ok(v)
        });
        self.in_flight.store(0, Ordering::SeqCst);
        out
    }
}

impl Drop for NcclCommunicator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn spawn_watchdog(
    rank: usize,
    world: usize,
    timeout: Duration,
    started: Instant,
    in_flight: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(500));
            let since = in_flight.load(Ordering::SeqCst);
            if since == 0 {
                continue;
            }
            let now = started.elapsed().as_millis() as u64 + 1;
            if now.saturating_sub(since) > timeout.as_millis() as u64 {
                tracing::error!(
                    rank,
                    world,
                    "NCCL collective on rank {rank} of {world} did not complete within {timeout:?}; \
                     a peer rank has probably died or diverged. Aborting this process."
                );
                std::process::exit(70);
            }
        }
    });
}

struct AllReduceSum<'a>(&'a Comm);

impl InplaceOp1 for AllReduceSum<'_> {
    fn name(&self) -> &'static str {
        "nccl-all-reduce-sum"
    }

    fn cpu_fwd(&self, _storage: &mut CpuStorage, _layout: &Layout) -> candle_core::Result<()> {
        candle_core::bail!("NCCL all-reduce needs a CUDA tensor")
    }

    fn cuda_fwd(&self, storage: &mut CudaStorage, layout: &Layout) -> candle_core::Result<()> {
        use candle_core::backend::BackendStorage;
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("NCCL all-reduce needs a contiguous tensor")
        };
        let status = match storage.dtype() {
            DType::F32 => {
                let slice = storage.as_cuda_slice_mut::<f32>()?;
                let mut view = slice.slice_mut(start..end);
                self.0.all_reduce_in_place(&mut view, &ReduceOp::Sum)
            }
            DType::BF16 => {
                let slice = storage.as_cuda_slice_mut::<half::bf16>()?;
                let mut view = slice.slice_mut(start..end);
                self.0.all_reduce_in_place(&mut view, &ReduceOp::Sum)
            }
            DType::F64 => {
                let slice = storage.as_cuda_slice_mut::<f64>()?;
                let mut view = slice.slice_mut(start..end);
                self.0.all_reduce_in_place(&mut view, &ReduceOp::Sum)
            }
            other => candle_core::bail!("NCCL all-reduce: unsupported dtype {other:?}"),
        };
        status.map_err(|e| candle_core::Error::Msg(format!("ncclAllReduce: {e:?}")))?;
        Ok(())
    }
}

impl Communicator for NcclCommunicator {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world
    }

    fn all_reduce_sum(&self, tensor: &Tensor) -> Result<()> {
        self.guarded(|| Ok(tensor.inplace_op1(&AllReduceSum(&self.comm))?))
    }

    fn all_reduce_f64(&self, values: &mut [f64]) -> Result<()> {
        if values.is_empty() {
            return Ok(());
        }
        let t = Tensor::from_slice(values, values.len(), &self.device)?;
        self.all_reduce_sum(&t)?;
        values.copy_from_slice(&t.to_vec1::<f64>()?);
        Ok(())
    }
}
