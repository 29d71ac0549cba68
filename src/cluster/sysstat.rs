//! Machine load for node records: CPU use from `/proc/stat` deltas and memory from
//! `/proc/meminfo`. Linux only; elsewhere the values stay zero.

/// CPU sampler; keeps the previous `/proc/stat` totals to compute use over the last period.
#[derive(Debug, Default)]
pub struct SysStat {
    prev: Option<(u64, u64)>,
}

/// One sample.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Load {
    /// CPU use since the previous sample, 0..=100.
    pub cpu: f64,
    /// Memory in use (total - available), bytes.
    pub mem_used: u64,
    /// Total memory, bytes.
    pub mem_total: u64,
}

impl SysStat {
    /// Reads the current load.
    pub fn sample(&mut self) -> Load {
        let mut load = Load::default();
        if let Ok(stat) = std::fs::read_to_string("/proc/stat")
            && let Some((idle, total)) = parse_cpu_line(&stat)
        {
            if let Some((pidle, ptotal)) = self.prev
                && total > ptotal
            {
                let busy = (total - ptotal).saturating_sub(idle.saturating_sub(pidle));
                load.cpu = 100.0 * busy as f64 / (total - ptotal) as f64;
            }
            self.prev = Some((idle, total));
        }
        if let Ok(mem) = std::fs::read_to_string("/proc/meminfo") {
            let (total, available) = parse_meminfo(&mem);
            load.mem_total = total;
            load.mem_used = total.saturating_sub(available);
        }
        load
    }
}

/// `(idle + iowait, total)` jiffies from the aggregate `cpu` line.
fn parse_cpu_line(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 4 {
        return None;
    }
    let idle = v[3] + v.get(4).copied().unwrap_or(0);
    // guest and guest_nice are already counted in user and nice.
    let total: u64 = v.iter().take(8).sum();
    Some((idle, total))
}

/// `(MemTotal, MemAvailable)` in bytes.
fn parse_meminfo(mem: &str) -> (u64, u64) {
    let field = |name: &str| {
        mem.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("MemTotal:"), field("MemAvailable:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let stat = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n";
        assert_eq!(parse_cpu_line(stat), Some((850, 1000)));
        let mem = "MemTotal:       16000 kB\nMemFree:  1 kB\nMemAvailable:    4000 kB\n";
        assert_eq!(parse_meminfo(mem), (16000 * 1024, 4000 * 1024));
    }

    #[test]
    fn samples_this_machine() {
        let mut s = SysStat::default();
        s.sample();
        let l = s.sample();
        assert!(l.mem_total > 0 && l.mem_used <= l.mem_total);
        assert!((0.0..=100.0).contains(&l.cpu));
    }
}
