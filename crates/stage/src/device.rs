//! The `--device auto|cpu|cuda[:N]` option every stage shares.

use crate::error::StageError;
use candle_core::Device;
use std::fmt;
use std::str::FromStr;

/// Which device a stage runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceArg {
    /// CUDA device 0 when this build has CUDA and a GPU is present, else the CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// CUDA device N (needs a build with `--features cuda`).
    Cuda(usize),
}

impl FromStr for DeviceArg {
    type Err = StageError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || StageError::Device(format!("{s}: expected auto, cpu, cuda or cuda:N"));
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda(0)),
            other => match other.strip_prefix("cuda:") {
                Some(n) => n.parse().map(Self::Cuda).map_err(|_| bad()),
                None => Err(bad()),
            },
        }
    }
}

impl fmt::Display for DeviceArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl DeviceArg {
    /// Opens the device. `cuda` on a build without CUDA support is an error that says how to
    /// build with it; `auto` quietly falls back to the CPU.
    pub fn open(self) -> Result<Device, StageError> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Auto => {
                if candle_core::utils::cuda_is_available() {
                    Device::new_cuda(0).or(Ok(Device::Cpu))
                } else {
                    Ok(Device::Cpu)
                }
            }
            Self::Cuda(n) => {
                if !candle_core::utils::cuda_is_available() {
                    return Err(StageError::Device(format!(
                        "cuda:{n}: this build has no CUDA support; rebuild with `--features cuda`"
                    )));
                }
                Device::new_cuda(n).map_err(|e| StageError::Device(format!("cuda:{n}: {e}")))
            }
        }
    }
}

/// A one-line description of a device for logs and reports.
pub fn describe(device: &Device) -> String {
    match device {
        Device::Cpu => format!("cpu ({} threads)", rayon_threads()),
        Device::Cuda(_) => "cuda".to_string(),
        Device::Metal(_) => "metal".to_string(),
    }
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_arg_parses() {
        assert_eq!("auto".parse::<DeviceArg>().unwrap(), DeviceArg::Auto);
        assert_eq!("CPU".parse::<DeviceArg>().unwrap(), DeviceArg::Cpu);
        assert_eq!("cuda".parse::<DeviceArg>().unwrap(), DeviceArg::Cuda(0));
        assert_eq!("cuda:1".parse::<DeviceArg>().unwrap(), DeviceArg::Cuda(1));
        assert!("tpu".parse::<DeviceArg>().is_err());
        assert!("cuda:x".parse::<DeviceArg>().is_err());
        assert!(matches!(
            DeviceArg::Cpu.open().unwrap(),
            candle_core::Device::Cpu
        ));
        assert!(matches!(
            DeviceArg::Auto.open().unwrap(),
            candle_core::Device::Cpu
        ));
        #[cfg(not(feature = "cuda"))]
        {
            let err = DeviceArg::Cuda(0).open().unwrap_err().to_string();
            assert!(err.contains("--features cuda"), "{err}");
        }
    }
}
