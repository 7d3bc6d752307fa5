//! Where the CPU went during a measurement: per process group (this load generator, the
//! server, the workers, every PostgreSQL backend, the broker, pgbench) and for the whole
//! machine, from `/proc` (Linux). 100% is one core.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;

/// Clock ticks per second of `/proc`'s CPU times (`USER_HZ`, 100 on every Linux platform the
/// benchmark runs on).
const TICKS_PER_SECOND: f64 = 100.0;

/// A process group: what it is called in reports, and how its processes are found.
#[derive(Debug, Clone)]
pub(crate) enum Group {
    /// These process ids.
    Pids(&'static str, Vec<u32>),
    /// Every process whose command name (`/proc/<pid>/comm`) is this.
    Command(&'static str, &'static str),
}

impl Group {
    fn name(&self) -> &'static str {
        match self {
            Self::Pids(name, _) | Self::Command(name, _) => name,
        }
    }
}

/// The groups of a run: this process, the calendar's processes given, and the services.
pub(crate) fn groups(calendar: &[(&'static str, u32)]) -> Vec<Group> {
    let mut groups = vec![Group::Pids("calendar-bench", vec![std::process::id()])];
    groups.extend(
        calendar
            .iter()
            .map(|(name, pid)| Group::Pids(name, vec![*pid])),
    );
    groups.extend([
        Group::Command("postgres", "postgres"),
        Group::Command("rabbitmq", "beam.smp"),
        Group::Command("pgbench", "pgbench"),
    ]);
    groups
}

/// CPU ticks used so far, per group and by the machine.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    at: Instant,
    groups: Vec<(&'static str, u64)>,
    /// Ticks of the whole machine: busy, and all.
    machine_busy: u64,
    machine_total: u64,
}

/// A process's user + system ticks, or 0 if it is gone.
fn process_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // The command name may hold spaces: fields count from after its closing parenthesis.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime 14 and stime 15 (1-based, as in proc(5)).
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    field(14).unwrap_or(0) + field(15).unwrap_or(0)
}

/// Every process id whose command name is `command`.
fn pids_of(command: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim_end() == command)
        })
        .collect()
}

/// The machine's busy and total ticks, from the first line of `/proc/stat`.
fn machine_ticks() -> (u64, u64) {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return (0, 0);
    };
    let values: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let total: u64 = values.iter().take(8).sum();
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

impl Snapshot {
    /// The ticks of `groups` now. Processes of a command group are looked up afresh, so
    /// backends that come and go between two snapshots count only for the time both saw them;
    /// the machine's figure counts everything.
    pub(crate) fn take(groups: &[Group]) -> Self {
        let (machine_busy, machine_total) = machine_ticks();
        Self {
            at: Instant::now(),
            groups: groups
                .iter()
                .map(|group| {
                    let pids = match group {
                        Group::Pids(_, pids) => pids.clone(),
                        Group::Command(_, command) => pids_of(command),
                    };
                    (group.name(), pids.into_iter().map(process_ticks).sum())
                })
                .collect(),
            machine_busy,
            machine_total,
        }
    }
}

/// CPU used between two snapshots, in percent of one core.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Usage {
    /// Per group (groups that used nothing are left out).
    pub(crate) groups: BTreeMap<&'static str, f64>,
    /// The whole machine: busy cores, in percent of one core (200% is two cores busy).
    pub(crate) machine_busy: f64,
    /// How many cores the machine has, as `/proc/stat` counts them.
    pub(crate) cores: f64,
}

impl Usage {
    /// From `before` to `after`.
    pub(crate) fn between(before: &Snapshot, after: &Snapshot) -> Self {
        let seconds = after.at.duration_since(before.at).as_secs_f64().max(1e-3);
        let percent = |ticks: u64| ticks as f64 / TICKS_PER_SECOND / seconds * 100.0;
        let groups = after
            .groups
            .iter()
            .zip(&before.groups)
            .filter_map(|((name, after), (_, before))| {
                let used = percent(after.saturating_sub(*before));
                (used >= 0.5).then_some((*name, used))
            })
            .collect();
        let total = after.machine_total.saturating_sub(before.machine_total) as f64;
        Self {
            groups,
            machine_busy: percent(after.machine_busy.saturating_sub(before.machine_busy)),
            cores: total / TICKS_PER_SECOND / seconds,
        }
    }

    /// One line: `machine 195% of 2 cores: postgres 80%, calendar-grpc 60%, ...`.
    pub(crate) fn line(&self) -> String {
        let mut groups: Vec<(&&str, &f64)> = self.groups.iter().collect();
        groups.sort_by(|a, b| b.1.total_cmp(a.1));
        let listed: Vec<String> = groups
            .iter()
            .map(|(name, used)| format!("{name} {used:.0}%"))
            .collect();
        format!(
            "machine {:.0}% of {:.0} cores: {}",
            self.machine_busy,
            self.cores.round(),
            listed.join(", ")
        )
    }
}
