//! How much of a node one principal may use: a call rate (a token bucket), calls in
//! progress, and open session watches. Each is answered with `RESOURCE_EXHAUSTED` naming the
//! setting, before the call reaches its service.
//!
//! Callers are counted by their audit name (a certificate's name, a token id, a party id), so
//! a client cannot reset its budget by reconnecting. A node started with
//! `--insecure-plaintext` cannot tell callers apart and limits no one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tonic::Status;

use crate::config::LimitSettings;

/// Idle callers are forgotten once this many are known, so the table stays small.
const FORGET_IDLE_ABOVE: usize = 4_096;

#[derive(Debug)]
pub struct Limiter {
    settings: LimitSettings,
    callers: Mutex<HashMap<String, Usage>>,
}

#[derive(Debug)]
struct Usage {
    tokens: f64,
    refilled: Instant,
    in_flight: u32,
    watches: u32,
}

#[derive(Debug, Clone, Copy)]
enum Held {
    Call,
    Watch,
}

/// Held while a call runs or a watch is open; gives its place back when dropped.
#[derive(Debug)]
pub struct Permit {
    limiter: Arc<Limiter>,
    caller: String,
    held: Held,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut callers = self.limiter.callers();
        if let Some(usage) = callers.get_mut(&self.caller) {
            match self.held {
                Held::Call => usage.in_flight = usage.in_flight.saturating_sub(1),
                Held::Watch => usage.watches = usage.watches.saturating_sub(1),
            }
        }
    }
}

impl Limiter {
    pub fn new(settings: LimitSettings) -> Arc<Self> {
        Arc::new(Self {
            settings,
            callers: Mutex::new(HashMap::new()),
        })
    }

    fn callers(&self) -> MutexGuard<'_, HashMap<String, Usage>> {
        self.callers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn usage<'a>(&self, callers: &'a mut HashMap<String, Usage>, caller: &str) -> &'a mut Usage {
        if !callers.contains_key(caller) && callers.len() >= FORGET_IDLE_ABOVE {
            let now = Instant::now();
            let burst = f64::from(self.settings.burst);
            callers
                .retain(|_, u| u.in_flight > 0 || u.watches > 0 || self.refilled(u, now) < burst);
        }
        callers.entry(caller.to_owned()).or_insert_with(|| Usage {
            tokens: f64::from(self.settings.burst),
            refilled: Instant::now(),
            in_flight: 0,
            watches: 0,
        })
    }

    fn refilled(&self, usage: &Usage, now: Instant) -> f64 {
        let earned = now.duration_since(usage.refilled).as_secs_f64()
            * f64::from(self.settings.requests_per_second);
        (usage.tokens + earned).min(f64::from(self.settings.burst))
    }

    /// Admits one call of `caller`, or says which limit it hit.
    pub fn admit(self: &Arc<Self>, caller: &str) -> Result<Permit, Status> {
        let s = &self.settings;
        let mut callers = self.callers();
        let usage = self.usage(&mut callers, caller);
        if s.requests_per_second > 0 {
            let now = Instant::now();
            usage.tokens = self.refilled(usage, now);
            usage.refilled = now;
            if usage.tokens < 1.0 {
                return Err(refused(
                    "requests_per_second",
                    format!(
                        "{caller} calls faster than limits.requests_per_second ({}/s, \
                         limits.burst {}): slow down",
                        s.requests_per_second, s.burst
                    ),
                ));
            }
        }
        if usage.in_flight >= s.max_concurrent_requests {
            return Err(refused(
                "max_concurrent_requests",
                format!(
                    "{caller} has {} calls in progress (limits.max_concurrent_requests): \
                     wait for some to finish",
                    usage.in_flight
                ),
            ));
        }
        if s.requests_per_second > 0 {
            usage.tokens -= 1.0;
        }
        usage.in_flight += 1;
        Ok(Permit {
            limiter: self.clone(),
            caller: caller.to_owned(),
            held: Held::Call,
        })
    }

    /// Opens one session watch of `caller`, or says it has too many open.
    pub fn open_watch(self: &Arc<Self>, caller: &str) -> Result<Permit, Status> {
        let limit = self.settings.max_watch_streams;
        let mut callers = self.callers();
        let usage = self.usage(&mut callers, caller);
        if usage.watches >= limit {
            return Err(refused(
                "max_watch_streams",
                format!(
                    "{caller} has {limit} session watches open (limits.max_watch_streams): \
                     close one first"
                ),
            ));
        }
        usage.watches += 1;
        Ok(Permit {
            limiter: self.clone(),
            caller: caller.to_owned(),
            held: Held::Watch,
        })
    }
}

fn refused(limit: &'static str, message: String) -> Status {
    metrics::counter!("mpc_limit_refusals_total", "limit" => limit).increment(1);
    Status::resource_exhausted(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(rate: u32, burst: u32, concurrent: u32, watches: u32) -> Arc<Limiter> {
        Limiter::new(LimitSettings {
            requests_per_second: rate,
            burst,
            max_concurrent_requests: concurrent,
            max_watch_streams: watches,
            max_open_sessions_per_key: 1,
            min_free_disk_mib: 0,
        })
    }

    #[test]
    fn a_burst_is_admitted_then_the_rate_holds_per_caller() {
        // One token per 1000 s: nothing refills during the test.
        let l = limiter(1, 3, 100, 1);
        let permits: Vec<_> = (0..3).map(|_| l.admit("token:a").unwrap()).collect();
        let refused = l.admit("token:a").unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(refused.message().contains("limits.requests_per_second"));
        // Giving permits back frees concurrency, not rate.
        drop(permits);
        assert!(l.admit("token:a").is_err());
        // Another caller has its own bucket.
        assert!(l.admit("token:b").is_ok());
    }

    #[test]
    fn the_bucket_refills_with_time() {
        let l = limiter(1_000, 1, 100, 1);
        drop(l.admit("c").unwrap());
        assert!(l.admit("c").is_err());
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(l.admit("c").is_ok());
    }

    #[test]
    fn calls_in_progress_and_watches_are_bounded_and_given_back() {
        let l = limiter(0, 0, 2, 1);
        let a = l.admit("c").unwrap();
        let _b = l.admit("c").unwrap();
        let refused = l.admit("c").unwrap_err();
        assert!(refused.message().contains("limits.max_concurrent_requests"));
        drop(a);
        let _c = l.admit("c").unwrap();

        let w = l.open_watch("c").unwrap();
        let refused = l.open_watch("c").unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(refused.message().contains("limits.max_watch_streams"));
        assert!(l.open_watch("other").is_ok());
        drop(w);
        assert!(l.open_watch("c").is_ok());
    }

    #[test]
    fn idle_callers_are_forgotten_when_the_table_is_full() {
        // Buckets refill within microseconds: every caller but the busy one is idle.
        let l = limiter(1_000_000, 1, 10, 10);
        let busy = l.admit("busy").unwrap();
        for i in 0..FORGET_IDLE_ABOVE + 100 {
            drop(l.admit(&format!("caller-{i}")));
        }
        let callers = l.callers().len();
        assert!(callers <= FORGET_IDLE_ABOVE, "{callers} callers kept");
        assert!(l.callers().contains_key("busy"));
        drop(busy);
    }
}
