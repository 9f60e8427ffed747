//! Time as the lake stores it.

/// Microseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ts(pub i64);

impl Ts {
    pub fn date(self) -> chrono::NaiveDate {
        chrono::DateTime::from_timestamp_micros(self.0)
            .map(|d| d.date_naive())
            .unwrap_or_default()
    }
}
