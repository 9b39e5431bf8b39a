//! Timestamp codec shared by both backends.
//!
//! PostgreSQL stores `TIMESTAMPTZ`; SQLite stores INTEGER microseconds since the epoch, because
//! sqlx's SQLite text encoding trims sub-second digits and so does not sort or compare as text.
//! Both ends therefore hold microsecond precision, and every value is normalised to UTC and whole
//! microseconds before it is written, so what is read back equals what was written.

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgTypeInfo, PgValueRef};
use sqlx::sqlite::{SqliteTypeInfo, SqliteValueRef};
use sqlx::{Database, Decode, Encode, Postgres, Sqlite, Type};
use time::{OffsetDateTime, UtcOffset};

/// An instant as the database holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DbTime(OffsetDateTime);

impl DbTime {
    /// Now, at the precision the database keeps.
    pub(crate) fn now() -> Self {
        Self::from(OffsetDateTime::now_utc())
    }

    fn unix_micros(self) -> i64 {
        // Lossless: normalised values are whole microseconds within OffsetDateTime's range.
        (self.0.unix_timestamp_nanos() / 1_000) as i64
    }

    fn from_unix_micros(micros: i64) -> Result<Self, BoxDynError> {
        Ok(Self(OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(micros) * 1_000,
        )?))
    }
}

/// Normalise an instant to UTC and whole microseconds.
pub(crate) fn normalize(t: OffsetDateTime) -> OffsetDateTime {
    let t = t.to_offset(UtcOffset::UTC);
    let nanos = t.unix_timestamp_nanos();
    let floored = nanos - nanos.rem_euclid(1_000);
    OffsetDateTime::from_unix_timestamp_nanos(floored).unwrap_or(t)
}

impl From<OffsetDateTime> for DbTime {
    fn from(t: OffsetDateTime) -> Self {
        Self(normalize(t))
    }
}

impl From<DbTime> for OffsetDateTime {
    fn from(t: DbTime) -> Self {
        t.0
    }
}

/// `Option<DbTime>` → `Option<OffsetDateTime>`.
pub(crate) fn opt(t: Option<DbTime>) -> Option<OffsetDateTime> {
    t.map(Into::into)
}

impl Type<Sqlite> for DbTime {
    fn type_info() -> SqliteTypeInfo {
        <i64 as Type<Sqlite>>::type_info()
    }
    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <i64 as Type<Sqlite>>::compatible(ty)
    }
}

impl<'q> Encode<'q, Sqlite> for DbTime {
    fn encode_by_ref(
        &self,
        buf: &mut <Sqlite as Database>::ArgumentBuffer<'q>,
    ) -> Result<IsNull, BoxDynError> {
        <i64 as Encode<'q, Sqlite>>::encode(self.unix_micros(), buf)
    }
}

impl<'r> Decode<'r, Sqlite> for DbTime {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        Self::from_unix_micros(<i64 as Decode<'r, Sqlite>>::decode(value)?)
    }
}

impl Type<Postgres> for DbTime {
    fn type_info() -> PgTypeInfo {
        <OffsetDateTime as Type<Postgres>>::type_info()
    }
    fn compatible(ty: &PgTypeInfo) -> bool {
        <OffsetDateTime as Type<Postgres>>::compatible(ty)
    }
}

impl<'q> Encode<'q, Postgres> for DbTime {
    fn encode_by_ref(
        &self,
        buf: &mut <Postgres as Database>::ArgumentBuffer<'q>,
    ) -> Result<IsNull, BoxDynError> {
        <OffsetDateTime as Encode<'q, Postgres>>::encode_by_ref(&self.0, buf)
    }
}

impl<'r> Decode<'r, Postgres> for DbTime {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(Self::from(
            <OffsetDateTime as Decode<'r, Postgres>>::decode(value)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn normalize_floors_to_micros_in_utc() {
        let t = datetime!(2026-01-02 03:04:05.123_456_789 +02:00);
        let n = normalize(t);
        assert_eq!(n.offset(), UtcOffset::UTC);
        assert_eq!(n, datetime!(2026-01-02 01:04:05.123_456 UTC));
    }

    #[test]
    fn normalize_floors_before_epoch() {
        let t = datetime!(1969-12-31 23:59:59.999_999_5 UTC);
        assert_eq!(normalize(t), datetime!(1969-12-31 23:59:59.999_999 UTC));
    }

    #[test]
    fn micros_round_trip() {
        let t = DbTime::from(datetime!(2030-06-01 12:00:00.000_001 UTC));
        assert_eq!(DbTime::from_unix_micros(t.unix_micros()).unwrap(), t);
    }
}
