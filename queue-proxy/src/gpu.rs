//! GPU utilisation and memory through NVML, behind a trait so the rest is tested without a
//! GPU. Without `libnvidia-ml` (no driver, no GPU) the readings are simply absent.

use serval_api::stat::GpuStat;

/// Something that can read the pod's GPUs.
pub trait GpuReader: Send + Sync {
    /// Current readings over the visible devices; `None` when they cannot be read.
    fn read(&self) -> Option<GpuStat>;
}

/// Which devices `NVIDIA_VISIBLE_DEVICES` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VisibleDevices {
    All,
    None,
    /// Indices (`0,1`) or UUIDs (`GPU-...`), as the NVIDIA container runtime accepts.
    Listed(Vec<String>),
}

impl VisibleDevices {
    pub fn parse(value: Option<&str>) -> Self {
        match value.map(str::trim) {
            None | Some("") | Some("all") => Self::All,
            Some("none") | Some("void") => Self::None,
            Some(list) => Self::Listed(
                list.split(',')
                    .map(|d| d.trim().to_string())
                    .filter(|d| !d.is_empty())
                    .collect(),
            ),
        }
    }
}

/// Averages utilisation and sums memory over devices.
pub fn combine(readings: &[(u32, u64, u64)]) -> Option<GpuStat> {
    if readings.is_empty() {
        return None;
    }
    let n = readings.len();
    Some(GpuStat {
        devices: n as u32,
        utilization_percent: readings.iter().map(|r| f64::from(r.0)).sum::<f64>() / n as f64,
        memory_used_bytes: readings.iter().map(|r| r.1).sum(),
        memory_total_bytes: readings.iter().map(|r| r.2).sum(),
    })
}

/// Reads through NVML.
pub struct NvmlReader {
    nvml: nvml_wrapper::Nvml,
    devices: VisibleDevices,
}

impl std::fmt::Debug for NvmlReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvmlReader")
            .field("devices", &self.devices)
            .finish()
    }
}

impl NvmlReader {
    /// Loads NVML; the error says why GPU metrics will be absent.
    pub fn new(devices: VisibleDevices) -> Result<Self, String> {
        let nvml = nvml_wrapper::Nvml::init().map_err(|e| format!("NVML unavailable: {e}"))?;
        Ok(Self { nvml, devices })
    }

    fn device(&self, id: &str) -> Result<nvml_wrapper::Device<'_>, nvml_wrapper::error::NvmlError> {
        match id.parse::<u32>() {
            Ok(index) => self.nvml.device_by_index(index),
            Err(_) => self.nvml.device_by_uuid(id),
        }
    }
}

impl GpuReader for NvmlReader {
    fn read(&self) -> Option<GpuStat> {
        let ids: Vec<String> = match &self.devices {
            VisibleDevices::None => return None,
            VisibleDevices::Listed(ids) => ids.clone(),
            VisibleDevices::All => (0..self.nvml.device_count().ok()?)
                .map(|i| i.to_string())
                .collect(),
        };
        let readings: Vec<(u32, u64, u64)> = ids
            .iter()
            .filter_map(|id| {
                let device = self.device(id).ok()?;
                let utilization = device.utilization_rates().ok()?;
                let memory = device.memory_info().ok()?;
                Some((utilization.gpu, memory.used, memory.total))
            })
            .collect();
        combine(&readings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_visible_devices() {
        assert_eq!(VisibleDevices::parse(None), VisibleDevices::All);
        assert_eq!(VisibleDevices::parse(Some("none")), VisibleDevices::None);
        assert_eq!(
            VisibleDevices::parse(Some("0, GPU-1234")),
            VisibleDevices::Listed(vec!["0".into(), "GPU-1234".into()])
        );
    }

    #[test]
    fn combines_devices() {
        let stat = combine(&[(80, 10, 40), (40, 30, 40)]).unwrap();
        assert_eq!(stat.devices, 2);
        assert_eq!(stat.utilization_percent, 60.0);
        assert_eq!((stat.memory_used_bytes, stat.memory_total_bytes), (40, 80));
        assert!(combine(&[]).is_none());
    }

    #[test]
    fn without_a_driver_nvml_says_why() {
        // On machines without libnvidia-ml this must be an error, never a panic.
        if let Err(reason) = NvmlReader::new(VisibleDevices::All) {
            assert!(reason.starts_with("NVML unavailable"), "{reason}");
        }
    }
}
