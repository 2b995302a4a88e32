//! One retry policy for every retry loop of the client: re-dialing a broker, metadata and
//! admin calls, ListOffsets, Fetch, Produce and group membership.
//!
//! Delays grow from `initial_delay` by `factor` up to `max_delay`, each shortened by up to
//! `jitter` of itself at random (so clients that failed together do not retry together). A
//! loop gives up after `attempts` tries or once `deadline` has passed since its first try,
//! whichever comes first; with neither set it retries for as long as the error is retriable.
//!
//! Loops nest (a produce retry looks the leader up, which retries metadata, which re-dials a
//! broker), so each loop runs its tries under its give-up time ([`Backoff::attempt`]): a
//! loop started inside gives up no later than the one around it, and requests and dials
//! inside wait no longer than that ([`within_deadline`]). Without this, giving up took
//! several times `deadline`, each inner loop starting its own.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::future::Future;
use std::time::{Duration, Instant};

tokio::task_local! {
    /// When the retry loop whose try is running gives up (see [`Backoff::attempt`]).
    static GIVE_UP_AT: Option<Instant>;
}

/// When the retry loops around the running code give up, if any of them does.
pub fn give_up_at() -> Option<Instant> {
    GIVE_UP_AT.try_with(|at| *at).ok().flatten()
}

/// `wait` shortened so that it ends when the retry loops around the running code give up:
/// a request or dial started just before the deadline does not run a whole timeout past it.
pub fn within_deadline(wait: Duration) -> Duration {
    match give_up_at() {
        Some(at) => wait.min(at.saturating_duration_since(Instant::now())),
        None => wait,
    }
}

/// Runs `fut` as code whose retry loops give up at `at` at the latest (`None`: whenever
/// the loops around it do).
pub async fn give_up_by<F: Future>(at: Option<Instant>, fut: F) -> F::Output {
    let at = earliest(at, give_up_at());
    GIVE_UP_AT.scope(at, fut).await
}

/// The earlier of two optional instants (`None` means never).
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// How the client retries retriable errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Delay after the first failure (e.g. `100ms`).
    #[serde(with = "duration")]
    #[schemars(with = "String")]
    pub initial_delay: Duration,
    /// Longest delay between two tries (e.g. `2s`).
    #[serde(with = "duration")]
    #[schemars(with = "String")]
    pub max_delay: Duration,
    /// Each delay is the previous one times this (at least 1).
    pub factor: f64,
    /// Fraction (0..=1) by which a delay is shortened at random.
    pub jitter: f64,
    /// Tries in all (the first included) before giving up; no limit when absent.
    pub attempts: Option<u32>,
    /// Give up once this long has passed since the first try (e.g. `30s`); no limit when
    /// absent.
    #[serde(with = "opt_duration")]
    #[schemars(with = "Option<String>")]
    pub deadline: Option<Duration>,
}

impl Default for RetryPolicy {
    /// 100 ms doubling up to 2 s, 25 % jitter, giving up after 30 s. A Kafka leader moves
    /// within the broker session timeout (9 s by default on KRaft) plus an election, so 30 s
    /// rides out a killed leader while a misconfiguration still fails within a minute.
    fn default() -> Self {
        RetryPolicy {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            factor: 2.0,
            jitter: 0.25,
            attempts: None,
            deadline: Some(Duration::from_secs(30)),
        }
    }
}

impl RetryPolicy {
    /// A policy that retries retriable errors for ever (a continuous backup rides out an
    /// outage of any length), with this policy's delays.
    pub fn forever(&self) -> RetryPolicy {
        RetryPolicy {
            attempts: None,
            deadline: None,
            ..self.clone()
        }
    }

    /// Checks the numbers; the message names the key at fault.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.factor.is_finite() && self.factor >= 1.0) {
            return Err(format!("retry.factor must be >= 1, got {}", self.factor));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(format!(
                "retry.jitter must be between 0 and 1, got {}",
                self.jitter
            ));
        }
        if self.attempts == Some(0) {
            return Err("retry.attempts must be at least 1 (1 = no retry)".into());
        }
        if self.max_delay < self.initial_delay {
            return Err("retry.max_delay must not be below retry.initial_delay".into());
        }
        Ok(())
    }

    /// The delay after failed try number `retry` (0 for the first failure), before jitter.
    pub fn base_delay(&self, retry: u32) -> Duration {
        let factor = self.factor.max(1.0).powi(retry.min(64) as i32);
        let secs = self.initial_delay.as_secs_f64() * factor;
        let max = self.max_delay.as_secs_f64();
        Duration::from_secs_f64(if secs.is_finite() { secs.min(max) } else { max })
    }

    /// [`RetryPolicy::base_delay`] shortened by `jitter * unit` of itself; `unit` in 0..1.
    pub fn delay_with(&self, retry: u32, unit: f64) -> Duration {
        let base = self.base_delay(retry);
        base.mul_f64(1.0 - self.jitter.clamp(0.0, 1.0) * unit.clamp(0.0, 1.0))
    }

    /// The delay after failed try number `retry`, with random jitter.
    pub fn delay(&self, retry: u32) -> Duration {
        self.delay_with(retry, rand::random::<f64>())
    }

    /// The state of one retry loop, started now. It gives up at its own deadline or when
    /// the loops around it do, whichever comes first.
    pub fn start(&self) -> Backoff {
        let started = Instant::now();
        Backoff {
            policy: self.clone(),
            failures: 0,
            started,
            give_up_at: earliest(self.deadline.map(|d| started + d), give_up_at()),
        }
    }

    /// When a loop started now under this policy gives up (see [`RetryPolicy::start`]).
    pub fn give_up_at(&self) -> Option<Instant> {
        earliest(self.deadline.map(|d| Instant::now() + d), give_up_at())
    }
}

/// One retry loop's progress under a [`RetryPolicy`].
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: RetryPolicy,
    failures: u32,
    started: Instant,
    give_up_at: Option<Instant>,
}

impl Backoff {
    /// Records a failed try and returns how long to wait before the next, or `None` when
    /// the policy says to give up: attempts used up, or the wait would reach the give-up
    /// time (the deadline, or that of a loop around this one).
    pub fn next_delay(&mut self) -> Option<Duration> {
        self.failures = self.failures.saturating_add(1);
        if self.policy.attempts.is_some_and(|a| self.failures >= a) {
            return None;
        }
        let delay = self.policy.delay(self.failures - 1);
        match self.give_up_at {
            None => Some(delay),
            // A try after a wait that reaches the give-up time would have no time left
            // (requests inside are cut to it): give up now instead.
            Some(at) => (at.saturating_duration_since(Instant::now()) > delay).then_some(delay),
        }
    }

    /// Runs one try of this loop: retry loops started inside it give up no later than this
    /// one, and requests inside wait no longer (see [`within_deadline`]).
    pub async fn attempt<F: Future>(&self, fut: F) -> F::Output {
        GIVE_UP_AT.scope(self.give_up_at, fut).await
    }

    /// Failed tries so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Time since the loop started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits out the next delay; `false` when the policy says to give up.
    pub async fn wait(&mut self) -> bool {
        match self.next_delay() {
            Some(d) => {
                tokio::time::sleep(d).await;
                true
            }
            None => false,
        }
    }
}

/// Durations as `100ms`, `2s`, `1m 30s` in pipeline files.
pub(crate) mod duration {
    use super::*;

    pub fn parse(s: &str) -> Result<Duration, String> {
        humantime::parse_duration(s.trim())
            .map_err(|e| format!("'{s}' is not a duration ({e}): write e.g. 5s, 250ms or 1m 30s"))
    }

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(f64),
        }
        match Raw::deserialize(d)? {
            Raw::Text(s) => parse(&s).map_err(serde::de::Error::custom),
            Raw::Number(n) => Err(serde::de::Error::custom(format!(
                "'{n}' has no unit: write e.g. {n}s or {n}ms"
            ))),
        }
    }
}

/// Optional durations, `null` or absent for none.
pub(crate) mod opt_duration {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => duration::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "duration")] Duration);
        Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            factor: 2.0,
            jitter: 0.5,
            attempts: Some(4),
            deadline: None,
        }
    }

    #[test]
    fn delays_grow_by_the_factor_up_to_the_cap() {
        let p = policy();
        let ms: Vec<u128> = (0..6).map(|r| p.base_delay(r).as_millis()).collect();
        assert_eq!(ms, vec![100, 200, 400, 800, 1000, 1000]);
        // Huge retry counts stay at the cap instead of overflowing.
        assert_eq!(p.base_delay(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn jitter_only_shortens() {
        let p = policy();
        assert_eq!(p.delay_with(2, 0.0), Duration::from_millis(400));
        assert_eq!(p.delay_with(2, 1.0), Duration::from_millis(200));
        for _ in 0..100 {
            let d = p.delay(3);
            assert!(d >= Duration::from_millis(400) && d <= Duration::from_millis(800));
        }
    }

    #[test]
    fn attempts_count_the_first_try() {
        let mut b = policy().start();
        assert!(b.next_delay().is_some());
        assert!(b.next_delay().is_some());
        assert!(b.next_delay().is_some());
        assert_eq!(b.next_delay(), None, "4 tries in all");
        assert_eq!(b.failures(), 4);
    }

    #[tokio::test]
    async fn a_loop_inside_another_gives_up_with_it() {
        let outer = RetryPolicy {
            deadline: Some(Duration::from_millis(200)),
            ..RetryPolicy::default()
        };
        let inner = RetryPolicy {
            deadline: Some(Duration::from_secs(30)),
            ..RetryPolicy::default()
        };
        let b = outer.start();
        let (inner_at, capped) = b
            .attempt(async {
                (
                    inner.start().give_up_at,
                    within_deadline(Duration::from_secs(10)),
                )
            })
            .await;
        assert_eq!(
            inner_at, b.give_up_at,
            "the inner loop keeps the outer deadline"
        );
        assert!(
            capped <= Duration::from_millis(200),
            "a wait inside is cut: {capped:?}"
        );
        // An inner deadline sooner than the outer one stays.
        let short = RetryPolicy {
            deadline: Some(Duration::from_millis(50)),
            ..RetryPolicy::default()
        };
        let at = b.attempt(async { short.start().give_up_at }).await;
        assert!(at < b.give_up_at, "the sooner deadline wins");
        // Outside any loop nothing is cut.
        assert_eq!(
            within_deadline(Duration::from_secs(10)),
            Duration::from_secs(10)
        );
        assert_eq!(inner.start().give_up_at.map(|_| ()), Some(()));
    }

    #[tokio::test]
    async fn a_loop_without_deadline_inside_one_with_a_deadline_gives_up_with_it() {
        let outer = RetryPolicy {
            deadline: Some(Duration::from_millis(100)),
            ..RetryPolicy::default()
        };
        let forever = RetryPolicy::default().forever();
        let b = outer.start();
        let mut inner = b.attempt(async { forever.start() }).await;
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(inner.next_delay(), None, "gives up at the outer deadline");
        // On its own it never does.
        let mut alone = forever.start();
        assert!(alone.next_delay().is_some());
    }

    #[test]
    fn the_loop_gives_up_when_its_next_wait_would_reach_the_deadline() {
        let p = RetryPolicy {
            attempts: None,
            deadline: Some(Duration::from_millis(1000)),
            jitter: 0.0,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
            ..policy()
        };
        let mut b = p.start();
        assert_eq!(b.next_delay(), Some(Duration::from_millis(100)));
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(b.next_delay(), Some(Duration::from_millis(200)));
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(b.next_delay(), Some(Duration::from_millis(400)));
        std::thread::sleep(Duration::from_millis(400));
        // About 300 ms left, the next wait 800 ms: a try after it would have no time.
        assert_eq!(b.next_delay(), None);
    }

    #[test]
    fn forever_never_gives_up() {
        let mut b = RetryPolicy::default().forever().start();
        for _ in 0..1000 {
            assert!(b.next_delay().is_some());
        }
    }

    #[test]
    fn reads_durations_with_units_and_refuses_bare_numbers() {
        let p: RetryPolicy =
            serde_json::from_str(r#"{"initial_delay": "50ms", "deadline": "2m", "attempts": 3}"#)
                .unwrap();
        assert_eq!(p.initial_delay, Duration::from_millis(50));
        assert_eq!(p.deadline, Some(Duration::from_secs(120)));
        assert_eq!(p.attempts, Some(3));
        assert_eq!(p.max_delay, RetryPolicy::default().max_delay);
        let e = serde_json::from_str::<RetryPolicy>(r#"{"max_delay": 5}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("has no unit"), "{e}");
        let e = serde_json::from_str::<RetryPolicy>(r#"{"atempts": 5}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("atempts"), "{e}");
        let none: RetryPolicy = serde_json::from_str(r#"{"deadline": null}"#).unwrap();
        assert_eq!(none.deadline, None);
    }

    #[test]
    fn validate_names_the_key() {
        let mut p = policy();
        assert!(p.validate().is_ok());
        p.jitter = 2.0;
        assert!(p.validate().unwrap_err().contains("retry.jitter"));
        p = policy();
        p.factor = 0.5;
        assert!(p.validate().unwrap_err().contains("retry.factor"));
        p = policy();
        p.attempts = Some(0);
        assert!(p.validate().unwrap_err().contains("retry.attempts"));
    }
}
