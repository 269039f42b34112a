//! Spending caps that concurrency cannot overrun: before a call the most it can cost is
//! reserved against every cap of its scope (a key, or the whole gateway); after the call the
//! real cost is settled and the rest freed; a failed call frees it all. Windows are UTC
//! calendar hours, days and months. Time is an argument.
//!
//! This is the arithmetic the budget ledger (a Durable Object, issue 5) applies; it holds no
//! I/O and is not yet wired into the request path.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    Hour,
    Day,
    Month,
}

const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 24 * HOUR_MS;

/// Days since 1970-01-01 to (year, month 1-12), and back (Howard Hinnant's civil calendar).
fn civil_from_days(days: i64) -> (i64, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month)
}

fn days_from_civil(year: i64, month: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let mp = i64::from(if month > 2 { month - 3 } else { month + 9 });
    let doy = (153 * mp + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl Window {
    /// When the window holding `now_ms` began (ms since the epoch, UTC).
    pub fn start_ms(self, now_ms: u64) -> u64 {
        match self {
            Window::Hour => now_ms / HOUR_MS * HOUR_MS,
            Window::Day => now_ms / DAY_MS * DAY_MS,
            Window::Month => {
                let (year, month) = civil_from_days((now_ms / DAY_MS) as i64);
                days_from_civil(year, month) as u64 * DAY_MS
            }
        }
    }

    /// When the window holding `now_ms` ends and the next begins.
    pub fn reset_ms(self, now_ms: u64) -> u64 {
        match self {
            Window::Hour => self.start_ms(now_ms) + HOUR_MS,
            Window::Day => self.start_ms(now_ms) + DAY_MS,
            Window::Month => {
                let (year, month) = civil_from_days((now_ms / DAY_MS) as i64);
                let (year, month) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
                days_from_civil(year, month) as u64 * DAY_MS
            }
        }
    }
}

/// A spending cap.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Cap {
    pub window: Window,
    pub limit_usd: f64,
}

/// One window's spend: settled, and reserved by calls in flight.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Spend {
    window: Window,
    start_ms: u64,
    settled_usd: f64,
    reserved_usd: f64,
}

/// The spend of one scope (a key, or the whole gateway) in each window it is capped in.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Account {
    spends: Vec<Spend>,
}

/// An amount held for a call in flight, to settle or release when it ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reservation {
    pub amount_usd: f64,
    /// The windows (and their starts) the amount was held in.
    held: Vec<(Window, u64)>,
}

/// A cap that a reservation would exceed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Exceeded {
    pub window: Window,
    pub limit_usd: f64,
    pub spent_usd: f64,
    pub resets_at_ms: u64,
}

impl Account {
    /// The spend of `window` now, rolled over to a fresh window when the old one ended.
    fn spend(&mut self, window: Window, now_ms: u64) -> &mut Spend {
        let start_ms = window.start_ms(now_ms);
        let i = match self.spends.iter().position(|s| s.window == window) {
            Some(i) => i,
            None => {
                self.spends.push(Spend { window, start_ms, settled_usd: 0.0, reserved_usd: 0.0 });
                self.spends.len() - 1
            }
        };
        let spend = &mut self.spends[i];
        if spend.start_ms != start_ms {
            // Reservations of the ended window are released with it; their settlement, if it
            // comes, counts in the window it lands in.
            *spend = Spend { window, start_ms, settled_usd: 0.0, reserved_usd: 0.0 };
        }
        spend
    }

    /// Settled and reserved spend in `window` now.
    pub fn committed(&mut self, window: Window, now_ms: u64) -> f64 {
        let spend = self.spend(window, now_ms);
        spend.settled_usd + spend.reserved_usd
    }

    /// Holds `amount_usd` against every cap, or names the first cap it would exceed (holding
    /// nothing then).
    pub fn reserve(&mut self, caps: &[Cap], amount_usd: f64, now_ms: u64) -> Result<Reservation, Exceeded> {
        for cap in caps {
            let committed = self.committed(cap.window, now_ms);
            if committed + amount_usd > cap.limit_usd {
                return Err(Exceeded {
                    window: cap.window,
                    limit_usd: cap.limit_usd,
                    spent_usd: committed,
                    resets_at_ms: cap.window.reset_ms(now_ms),
                });
            }
        }
        let mut held = Vec::with_capacity(caps.len());
        for cap in caps {
            let spend = self.spend(cap.window, now_ms);
            spend.reserved_usd += amount_usd;
            held.push((cap.window, spend.start_ms));
        }
        Ok(Reservation { amount_usd, held })
    }

    /// The call ended and cost `actual_usd`: the hold is freed and the cost counted.
    pub fn settle(&mut self, reservation: &Reservation, actual_usd: f64, now_ms: u64) {
        self.release(reservation, now_ms);
        for &(window, _) in &reservation.held {
            self.spend(window, now_ms).settled_usd += actual_usd;
        }
    }

    /// The call failed: the hold is freed, nothing is counted.
    pub fn release(&mut self, reservation: &Reservation, now_ms: u64) {
        for &(window, start_ms) in &reservation.held {
            let spend = self.spend(window, now_ms);
            if spend.start_ms == start_ms {
                spend.reserved_usd = (spend.reserved_usd - reservation.amount_usd).max(0.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-22T10:30:00Z
    const NOW: u64 = 1_795_343_400_000;

    #[test]
    fn windows_are_utc_hours_days_and_months() {
        assert_eq!(Window::Hour.start_ms(NOW), 1_795_341_600_000); // 10:00
        assert_eq!(Window::Hour.reset_ms(NOW), 1_795_345_200_000); // 11:00
        assert_eq!(Window::Day.start_ms(NOW), 1_795_305_600_000); // 2026-11-22T00:00Z
        assert_eq!(Window::Month.start_ms(NOW), 1_793_491_200_000); // 2026-11-01T00:00Z
        assert_eq!(Window::Month.reset_ms(NOW), 1_796_083_200_000); // 2026-12-01T00:00Z
                                                                    // December rolls into January of the next year; February of a leap year has 29 days.
        let dec = 1_797_897_600_000; // 2026-12-22T00:00Z
        assert_eq!(Window::Month.reset_ms(dec), 1_798_761_600_000); // 2027-01-01T00:00Z
        let feb_2028 = 1_833_926_400_000; // 2028-02-12T00:00Z
        assert_eq!(Window::Month.reset_ms(feb_2028) - Window::Month.start_ms(feb_2028), 29 * DAY_MS);
    }

    #[test]
    fn reservations_hold_against_every_cap_and_refuse_past_one() {
        let caps = [Cap { window: Window::Hour, limit_usd: 1.0 }, Cap { window: Window::Month, limit_usd: 10.0 }];
        let mut account = Account::default();
        let a = account.reserve(&caps, 0.6, NOW).unwrap();
        let refused = account.reserve(&caps, 0.5, NOW).unwrap_err();
        assert_eq!(refused.window, Window::Hour);
        assert!((refused.spent_usd - 0.6).abs() < 1e-12);
        assert_eq!(refused.resets_at_ms, Window::Hour.reset_ms(NOW));
        // Settling frees the unused part of the hold.
        account.settle(&a, 0.1, NOW);
        assert!((account.committed(Window::Hour, NOW) - 0.1).abs() < 1e-12);
        assert!(account.reserve(&caps, 0.5, NOW).is_ok());
    }

    #[test]
    fn a_failed_call_frees_its_hold() {
        let caps = [Cap { window: Window::Day, limit_usd: 1.0 }];
        let mut account = Account::default();
        let a = account.reserve(&caps, 1.0, NOW).unwrap();
        assert!(account.reserve(&caps, 0.01, NOW).is_err());
        account.release(&a, NOW);
        assert_eq!(account.committed(Window::Day, NOW), 0.0);
    }

    #[test]
    fn windows_roll_over() {
        let caps = [Cap { window: Window::Hour, limit_usd: 1.0 }];
        let mut account = Account::default();
        let a = account.reserve(&caps, 1.0, NOW).unwrap();
        account.settle(&a, 1.0, NOW);
        assert!(account.reserve(&caps, 0.5, NOW).is_err());
        let next_hour = Window::Hour.reset_ms(NOW);
        assert!(account.reserve(&caps, 0.5, next_hour).is_ok());
        assert!((account.committed(Window::Hour, next_hour) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn concurrent_holds_never_exceed_the_cap_whatever_the_order() {
        let caps = [Cap { window: Window::Day, limit_usd: 1.0 }];
        let mut account = Account::default();
        let mut holds = vec![];
        for _ in 0..200 {
            if let Ok(r) = account.reserve(&caps, 0.03, NOW) {
                holds.push(r);
            }
        }
        assert_eq!(holds.len(), 33);
        for r in &holds {
            account.settle(r, 0.03, NOW);
        }
        assert!(account.committed(Window::Day, NOW) <= 1.0);
    }
}
