//! When a failed event is tried again (WEBHOOK_RETRY_SCHEDULE), with jitter.

use std::{fmt, time::Duration};

/// The waits before each retry; after the last retry fails, the endpoint is disabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule(Vec<Duration>);

/// The longest single wait accepted: a week.
const LONGEST: Duration = Duration::from_secs(7 * 24 * 3600);
/// The most retries a schedule may hold.
const MOST: usize = 100;

impl RetrySchedule {
    /// Parses `5s,5m,30m,2h` (each a whole number with `ms`, `s`, `m` or `h`).
    pub fn parse(text: &str) -> Result<RetrySchedule, String> {
        let waits = text.split(',').map(|part| parse_wait(part.trim())).collect::<Result<Vec<_>, _>>()?;
        if waits.len() > MOST {
            return Err(format!("at most {MOST} retries"));
        }
        Ok(RetrySchedule(waits))
    }

    /// How many retries follow the first attempt.
    pub fn retries(&self) -> usize {
        self.0.len()
    }

    /// The wait after failed attempt number `attempt` (1 the first), jittered by up to
    /// ±20 % with `unit` in [0, 1); `None` when that was the last.
    pub fn wait_after(&self, attempt: i32, unit: f64) -> Option<Duration> {
        let index = usize::try_from(attempt).ok()?.checked_sub(1)?;
        let base = *self.0.get(index)?;
        Some(base.mul_f64(0.8 + 0.4 * unit.clamp(0.0, 1.0)))
    }
}

impl fmt::Display for RetrySchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|d| format!("{}ms", d.as_millis())).collect();
        f.write_str(&parts.join(","))
    }
}

fn parse_wait(part: &str) -> Result<Duration, String> {
    let split = part.find(|c: char| !c.is_ascii_digit()).unwrap_or(part.len());
    let (number, unit) = part.split_at(split);
    let explain = || format!("{part:?} is not a wait like 500ms, 5s, 5m or 2h");
    let number: u64 = number.parse().map_err(|_| explain())?;
    let millis_per = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(explain()),
    };
    let wait = number.checked_mul(millis_per).map(Duration::from_millis).ok_or_else(explain)?;
    if wait > LONGEST {
        return Err(format!("{part:?} is longer than a week"));
    }
    Ok(wait)
}

/// A number in [0, 1) from the OS's random source.
pub fn random_unit() -> f64 {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_is_about_27_6_hours_over_seven_retries() {
        let schedule = RetrySchedule::parse("5s,5m,30m,2h,5h,10h,10h").unwrap();
        assert_eq!(schedule.retries(), 7);
        let total: Duration = (1..=7).map(|n| schedule.wait_after(n, 0.5).unwrap()).sum();
        assert_eq!(total.as_secs(), 5 + 300 + 1800 + 7200 + 18000 + 36000 + 36000);
        assert_eq!(schedule.wait_after(8, 0.5), None);
        assert_eq!(schedule.wait_after(0, 0.5), None);
        assert_eq!(schedule.wait_after(-1, 0.5), None);
        assert_eq!(schedule.wait_after(i32::MAX, 0.5), None);
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let schedule = RetrySchedule::parse("100s").unwrap();
        assert_eq!(schedule.wait_after(1, 0.0), Some(Duration::from_secs(80)));
        assert!(schedule.wait_after(1, 0.999_999).unwrap() < Duration::from_secs(120));
        assert_eq!(schedule.wait_after(1, 7.0), Some(Duration::from_secs(120)));
        for _ in 0..1000 {
            let unit = random_unit();
            assert!((0.0..1.0).contains(&unit));
        }
    }

    #[test]
    fn bad_schedules_are_refused_with_a_reason() {
        for bad in
            ["", "5", "5x", "-5s", "5 s", "s", "1.5s", "18446744073709551615h", "8d", "169h", ",", "5s,,5s"]
        {
            assert!(RetrySchedule::parse(bad).is_err(), "{bad:?}");
        }
        assert!(RetrySchedule::parse(&vec!["1ms"; 101].join(",")).is_err());
        assert_eq!(RetrySchedule::parse(" 10ms, 1s ").unwrap().to_string(), "10ms,1000ms");
        assert_eq!(RetrySchedule::parse("168h").unwrap().retries(), 1);
    }
}
