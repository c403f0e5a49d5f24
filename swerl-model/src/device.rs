//! Choosing the device and dtype at run time from user strings (`cpu`, `cuda`, `cuda:1`;
//! `f32`, `bf16`, `f16`).

use candle_core::{DType, Device};

use crate::error::{Error, Result};

/// Parses a device name: `cpu`, `cuda` (GPU 0) or `cuda:N`. CUDA needs the `cuda` feature.
pub fn parse_device(name: &str) -> Result<Device> {
    let name = name.trim().to_ascii_lowercase();
    match name.as_str() {
        "cpu" => Ok(Device::Cpu),
        "cuda" | "gpu" => cuda(0),
        other => match other.strip_prefix("cuda:") {
            Some(n) => {
                cuda(n.parse().map_err(|_| Error::arg("device", format!("bad GPU index in `{other}`")))?)
            }
            None => Err(Error::arg("device", format!("`{other}` is not cpu, cuda or cuda:N"))),
        },
    }
}

fn cuda(ordinal: usize) -> Result<Device> {
    if !candle_core::utils::cuda_is_available() {
        return Err(Error::arg(
            "device",
            "CUDA is not available (build with the `cuda` feature on a machine with a GPU)",
        ));
    }
    Ok(Device::new_cuda(ordinal)?)
}

/// Parses a compute dtype: `f32`, `bf16` or `f16`.
pub fn parse_dtype(name: &str) -> Result<DType> {
    match name.trim().to_ascii_lowercase().as_str() {
        "f32" | "float32" => Ok(DType::F32),
        "bf16" | "bfloat16" => Ok(DType::BF16),
        "f16" | "float16" | "half" => Ok(DType::F16),
        other => Err(Error::arg("dtype", format!("`{other}` is not f32, bf16 or f16"))),
    }
}

/// The value to give `RAYON_NUM_THREADS` at the start of a program, or `None` when it is
/// already set.
///
/// candle (0.11) looks up its thread count in every CPU matrix product. Unless
/// `RAYON_NUM_THREADS` is set, that count is the number of physical cores, parsed from
/// `/proc/cpuinfo` on Linux each time: about 35 µs on a 2-core virtual machine, and a training
/// step of SmolLM2-135M runs over a thousand products. The value returned is the count candle
/// computes itself, so setting it changes nothing but how often it is computed. It also sizes
/// rayon's global pool, which then has as many threads as candle's products use (rayon's own
/// default counts logical CPUs). Set it before any other thread starts, as `std::env::set_var`
/// requires; `swerl` does this first thing in `main`.
pub fn rayon_threads_env() -> Option<String> {
    if std::env::var_os("RAYON_NUM_THREADS").is_some() {
        return None;
    }
    Some(candle_core::utils::get_num_threads().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices_and_dtypes() {
        assert!(parse_device("CPU").unwrap().is_cpu());
        assert!(parse_device("tpu").is_err());
        assert!(parse_device("cuda:x").is_err());
        if !candle_core::utils::cuda_is_available() {
            let err = parse_device("cuda:0").unwrap_err();
            assert!(err.to_string().contains("CUDA is not available"), "{err}");
        }
        assert_eq!(parse_dtype("bf16").unwrap(), DType::BF16);
        assert!(parse_dtype("int8").is_err());
    }

    #[test]
    fn rayon_threads_env_is_candles_count_or_nothing() {
        match rayon_threads_env() {
            Some(n) => assert_eq!(n, candle_core::utils::get_num_threads().to_string()),
            None => assert!(std::env::var_os("RAYON_NUM_THREADS").is_some()),
        }
    }
}
