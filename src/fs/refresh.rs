//! Keeping a mount's years alive: a background thread that takes up catalog generations other
//! processes publish (checked every `Fence::check_age`) and, per `RefreshPolicy`, searches the
//! source again for resolved years and publishes what is new. Each change of generation is
//! handed to a callback with the paths whose content changed, so the FUSE adapter can drop the
//! kernel's cached attributes and pages of exactly those.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use chrono::Datelike;

use crate::key::TileYear;

/// Which resolved years a mount searches again, and how often.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshPolicy {
    /// `None`: never search again (generations published by others are still taken up).
    pub period: Option<Duration>,
    /// Every resolved year, or only those that can still receive acquisitions (this year and the
    /// previous one, by the UTC calendar).
    pub all_years: bool,
}

impl Default for RefreshPolicy {
    /// Hourly, for the years still receiving acquisitions.
    fn default() -> Self {
        RefreshPolicy {
            period: Some(Duration::from_secs(3600)),
            all_years: false,
        }
    }
}

impl RefreshPolicy {
    /// An explicit `--refresh DURATION`: every resolved year.
    pub fn every(period: Duration) -> Self {
        RefreshPolicy {
            period: Some(period),
            all_years: true,
        }
    }

    pub fn off() -> Self {
        RefreshPolicy {
            period: None,
            all_years: false,
        }
    }

    pub fn applies_to(&self, year: i32) -> bool {
        self.period.is_some() && (self.all_years || year >= chrono::Utc::now().year() - 1)
    }
}

/// What the refresher drives: a cube whose resolved years can be searched again and moved along
/// the store's catalog generations. Each call answers the paths (relative to the mount root)
/// whose content changed when the year moved to a newer generation: exact file paths, and
/// directory prefixes ending in `/` under which every object file changed.
pub trait LivingYears: Send + Sync + 'static {
    /// The tile-years resolved so far that have items.
    fn resolved_years(&self) -> Vec<TileYear>;
    /// Searches the source again for `ty`, publishes what is new and serves it.
    fn refresh_year(&self, ty: &TileYear) -> anyhow::Result<Option<Vec<String>>>;
    /// Serves the store's latest generation of `ty` if another process published one.
    fn poll_year(&self, ty: &TileYear) -> anyhow::Result<Option<Vec<String>>>;
}

/// Called with the changed paths of each change of generation.
pub type OnChange = Box<dyn Fn(&[String]) + Send + Sync>;

/// The background thread (stopped and joined on drop).
pub struct Refresher {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Refresher {
    /// Starts refreshing `years` under `policy`, polling the store for other processes'
    /// generations every `poll`.
    pub fn start(
        years: Arc<dyn LivingYears>,
        policy: RefreshPolicy,
        poll: Duration,
        on_change: OnChange,
    ) -> Self {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("refresh".into())
            .spawn(move || run(years.as_ref(), policy, poll, &on_change, &s))
            .expect("spawning the refresh thread");
        Refresher {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Refresher {
    fn drop(&mut self) {
        *self.stop.0.lock().unwrap() = true;
        self.stop.1.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(
    cube: &dyn LivingYears,
    policy: RefreshPolicy,
    poll: Duration,
    on_change: &OnChange,
    stop: &(Mutex<bool>, Condvar),
) {
    let tick = policy.period.map_or(poll, |p| p.min(poll));
    let mut last: HashMap<TileYear, Instant> = HashMap::new();
    loop {
        {
            let g = stop.0.lock().unwrap();
            let (g, _) = stop.1.wait_timeout(g, tick).unwrap();
            if *g {
                return;
            }
        }
        for ty in cube.resolved_years() {
            let due = policy.applies_to(ty.year)
                && policy
                    .period
                    .is_some_and(|p| last.get(&ty).is_none_or(|t| t.elapsed() >= p));
            let r = if due {
                last.insert(ty.clone(), Instant::now());
                cube.refresh_year(&ty)
            } else {
                cube.poll_year(&ty)
            };
            match r {
                Ok(Some(paths)) => on_change(&paths),
                Ok(None) => {}
                Err(e) if due => tracing::error!(
                    "{ty}: refresh failed (still serving the current catalog): {e:#}"
                ),
                Err(e) => tracing::warn!("{ty}: checking the store's catalog: {e:#}"),
            }
        }
    }
}
