//! Data parallelism as a pluggable piece: the [`Communicator`] trait (gradient and metric
//! all-reduce), the single-process no-op, the launcher environment ([`RankInfo`], read like
//! torchrun's), the TCP rendezvous that hands rank 0's NCCL id to the other ranks, and (feature
//! `nccl`) the NCCL implementation.
//!
//! The trainer sums gradients across ranks (not averages): every micro-batch's loss is already
//! its share of the *global* objective (see [`crate::BatchNorm`]), so a sum is exact.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use candle_core::Tensor;

use crate::error::{Error, Result};

#[cfg(feature = "nccl")]
mod nccl;
#[cfg(feature = "nccl")]
pub use nccl::NcclCommunicator;

/// Collective operations the trainer needs. All ranks call the same operations in the same order.
pub trait Communicator {
    /// This process's rank, `0..world_size`.
    fn rank(&self) -> usize;
    /// Number of processes.
    fn world_size(&self) -> usize;
    /// Replaces `tensor` (contiguous, on this rank's device) by its sum over all ranks, in place.
    fn all_reduce_sum(&self, tensor: &Tensor) -> Result<()>;
    /// Sums host values over all ranks.
    fn all_reduce_f64(&self, values: &mut [f64]) -> Result<()>;
    /// Whether this is rank 0 (which writes logs and checkpoints).
    fn is_main(&self) -> bool {
        self.rank() == 0
    }
}

/// One process, nothing to reduce.
#[derive(Debug, Clone, Copy, Default)]
pub struct SingleProcess;

impl Communicator for SingleProcess {
    fn rank(&self) -> usize {
        0
    }
    fn world_size(&self) -> usize {
        1
    }
    fn all_reduce_sum(&self, _tensor: &Tensor) -> Result<()> {
        Ok(())
    }
    fn all_reduce_f64(&self, _values: &mut [f64]) -> Result<()> {
        Ok(())
    }
}

/// A process's place in a multi-process job, from the launcher's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankInfo {
    /// Global rank (`RANK`).
    pub rank: usize,
    /// Number of processes (`WORLD_SIZE`).
    pub world_size: usize,
    /// Rank on this node, which picks the GPU (`LOCAL_RANK`, default `rank`).
    pub local_rank: usize,
    /// Rendezvous host (`MASTER_ADDR`, default `127.0.0.1`).
    pub master_addr: String,
    /// Rendezvous port (`MASTER_PORT`, default 29500).
    pub master_port: u16,
}

impl RankInfo {
    /// Reads `RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT` (as torchrun sets
    /// them). `None` when `WORLD_SIZE` is unset: a single-process run.
    pub fn from_env() -> Result<Option<Self>> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// [`RankInfo::from_env`] over any variable lookup (for tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let Some(world) = get("WORLD_SIZE") else {
            return Ok(None);
        };
        let parse = |key: &str, value: &str| -> Result<usize> {
            value.trim().parse().map_err(|_| Error::config(key, format!("not a number: {value:?}")))
        };
        let world_size = parse("WORLD_SIZE", &world)?;
        let rank = parse(
            "RANK",
            &get("RANK").ok_or_else(|| Error::config("RANK", "unset while WORLD_SIZE is set"))?,
        )?;
        if world_size == 0 || rank >= world_size {
            return Err(Error::config("RANK", format!("rank {rank} is not below WORLD_SIZE {world_size}")));
        }
        let local_rank = match get("LOCAL_RANK") {
            Some(v) => parse("LOCAL_RANK", &v)?,
            None => rank,
        };
        let master_addr = get("MASTER_ADDR").unwrap_or_else(|| "127.0.0.1".to_owned());
        let master_port = match get("MASTER_PORT") {
            Some(v) => {
                v.trim().parse().map_err(|_| Error::config("MASTER_PORT", format!("not a port: {v:?}")))?
            }
            None => 29500,
        };
        Ok(Some(Self { rank, world_size, local_rank, master_addr, master_port }))
    }
}

const MAGIC: &[u8; 8] = b"SWERLRDV";

/// Rank 0 sends `payload` to every other rank over TCP at `MASTER_ADDR:MASTER_PORT`; the others
/// receive it. Every rank returns the payload. Rank 0 fails naming the ranks that never
/// connected within `timeout`; the others fail naming rank 0 when it cannot be reached.
pub fn rendezvous_broadcast(info: &RankInfo, payload: Option<&[u8]>, timeout: Duration) -> Result<Vec<u8>> {
    let err = |message: String| Error::Communicator { rank: info.rank, world: info.world_size, message };
    let addr = format!("{}:{}", info.master_addr, info.master_port);
    if info.rank == 0 {
        let payload = payload.ok_or_else(|| err("rank 0 must provide the rendezvous payload".into()))?;
        let listener = TcpListener::bind(&addr).map_err(|e| err(format!("cannot listen on {addr}: {e}")))?;
        listener.set_nonblocking(true).map_err(|e| err(e.to_string()))?;
        let deadline = Instant::now() + timeout;
        let mut joined = vec![false; info.world_size];
        joined[0] = true;
        while joined.iter().any(|j| !j) {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    stream.set_nonblocking(false).map_err(|e| err(e.to_string()))?;
                    stream.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| err(e.to_string()))?;
                    let mut hello = [0u8; 16];
                    if stream.read_exact(&mut hello).is_err() || &hello[..8] != MAGIC {
                        continue; // not one of ours
                    }
                    let peer = u64::from_le_bytes(hello[8..].try_into().expect("8 bytes")) as usize;
                    if peer == 0 || peer >= info.world_size {
                        return Err(err(format!("a peer announced itself as rank {peer}")));
                    }
                    let mut msg = Vec::with_capacity(payload.len() + 8);
                    msg.extend_from_slice(&(payload.len() as u64).to_le_bytes());
                    msg.extend_from_slice(payload);
                    stream.write_all(&msg).map_err(|e| err(format!("sending to rank {peer}: {e}")))?;
                    joined[peer] = true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        let missing: Vec<usize> =
                            joined.iter().enumerate().filter(|(_, j)| !**j).map(|(r, _)| r).collect();
                        return Err(err(format!(
                            "rendezvous timed out after {timeout:?} on {addr}: rank(s) {missing:?} never connected"
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(err(format!("accept on {addr}: {e}"))),
            }
        }
        Ok(payload.to_vec())
    } else {
        let deadline = Instant::now() + timeout;
        let mut last_error = String::from("no attempt");
        loop {
            if Instant::now() > deadline {
                return Err(err(format!(
                    "rendezvous timed out after {timeout:?}: rank 0 at {addr} unreachable ({last_error})"
                )));
            }
            let target = addr.to_socket_addrs().map_err(|e| err(format!("resolving {addr}: {e}")))?.next();
            let Some(target) = target else {
                return Err(err(format!("{addr} resolves to nothing")));
            };
            match TcpStream::connect_timeout(&target, Duration::from_secs(2)) {
                Ok(mut stream) => {
                    let mut hello = Vec::with_capacity(16);
                    hello.extend_from_slice(MAGIC);
                    hello.extend_from_slice(&(info.rank as u64).to_le_bytes());
                    let remaining =
                        deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(1));
                    stream.set_read_timeout(Some(remaining)).map_err(|e| err(e.to_string()))?;
                    stream.write_all(&hello).map_err(|e| err(format!("greeting rank 0: {e}")))?;
                    let mut len = [0u8; 8];
                    stream.read_exact(&mut len).map_err(|e| err(format!("reading from rank 0: {e}")))?;
                    let len = u64::from_le_bytes(len) as usize;
                    if len > 1 << 20 {
                        return Err(err(format!("rendezvous payload of {len} bytes is implausible")));
                    }
                    let mut payload = vec![0u8; len];
                    stream.read_exact(&mut payload).map_err(|e| err(format!("reading from rank 0: {e}")))?;
                    return Ok(payload);
                }
                Err(e) => {
                    last_error = e.to_string();
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn env_is_read_like_torchrun() {
        assert_eq!(RankInfo::from_lookup(lookup(&[])).unwrap(), None);
        let info =
            RankInfo::from_lookup(lookup(&[("WORLD_SIZE", "4"), ("RANK", "2"), ("MASTER_PORT", "1234")]))
                .unwrap()
                .unwrap();
        assert_eq!((info.rank, info.world_size, info.local_rank, info.master_port), (2, 4, 2, 1234));
        assert!(RankInfo::from_lookup(lookup(&[("WORLD_SIZE", "2"), ("RANK", "2")])).is_err());
        assert!(
            RankInfo::from_lookup(lookup(&[("WORLD_SIZE", "2")])).unwrap_err().to_string().contains("RANK")
        );
    }

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    fn info(rank: usize, world: usize, port: u16) -> RankInfo {
        RankInfo {
            rank,
            world_size: world,
            local_rank: rank,
            master_addr: "127.0.0.1".into(),
            master_port: port,
        }
    }

    #[test]
    fn rendezvous_hands_rank0_payload_to_everyone() {
        let port = free_port();
        let payload: Vec<u8> = (0..128u8).collect();
        let handles: Vec<_> = (1..4)
            .map(|r| {
                std::thread::spawn(move || {
                    rendezvous_broadcast(&info(r, 4, port), None, Duration::from_secs(20))
                })
            })
            .collect();
        let got0 = rendezvous_broadcast(&info(0, 4, port), Some(&payload), Duration::from_secs(20)).unwrap();
        assert_eq!(got0, payload);
        for h in handles {
            assert_eq!(h.join().unwrap().unwrap(), payload);
        }
    }

    #[test]
    fn timeouts_name_the_missing_ranks() {
        let port = free_port();
        let err =
            rendezvous_broadcast(&info(0, 3, port), Some(b"x"), Duration::from_millis(300)).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("rank 0 of 3") && msg.contains("[1, 2]"), "{msg}");
        let port = free_port();
        let err = rendezvous_broadcast(&info(1, 2, port), None, Duration::from_millis(300)).unwrap_err();
        assert!(err.to_string().contains("rank 1 of 2") && err.to_string().contains("rank 0"), "{err}");
    }

    #[test]
    fn single_process_is_a_no_op() {
        let c = SingleProcess;
        let t = Tensor::new(&[1.0f32, 2.0], &candle_core::Device::Cpu).unwrap();
        c.all_reduce_sum(&t).unwrap();
        assert_eq!(t.to_vec1::<f32>().unwrap(), vec![1.0, 2.0]);
        let mut v = [3.0];
        c.all_reduce_f64(&mut v).unwrap();
        assert_eq!(v, [3.0]);
        assert!(c.is_main());
    }
}
