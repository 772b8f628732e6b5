//! Number sequence definitions declared through the admin API: a small table beside the segment
//! table (`floe_numbers` by default, `segment.numbers_table`), so every node sharing the
//! database sees them. The counters themselves are ordinary segment rows (`name@period`).
//!
//! The store keeps the definition as text; whether it is valid is the core's to say
//! ([`floe_core::numbers::Sequence::new`]), when the server reads it.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::sql::SqlSegmentStore;
use super::{SequenceRow, SequenceStore, StoreError};
use crate::db::Dialect;

/// The statements of the definitions table, written once per store.
#[derive(Debug)]
pub(super) struct SequenceStatements {
    create_table: String,
    select_one: String,
    select_all: String,
    insert: String,
}

impl SequenceStatements {
    pub(super) fn new(d: Dialect, t: &str) -> Self {
        // Names and formats compare byte for byte, as segment tags do (MariaDB's default
        // collation would make `Order` and `order` one name).
        let (text, int, strict) = match d {
            Dialect::Sqlite => ("TEXT", "INTEGER", " STRICT"),
            Dialect::MySql => (
                "VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
                "BIGINT",
                "",
            ),
            Dialect::Postgres => ("VARCHAR(255)", "BIGINT", ""),
        };
        let cols = "name, format_spec, reset_period, time_zone, start_value, step";
        let sql = |q: String| d.placeholders(&q);
        SequenceStatements {
            create_table: format!(
                "CREATE TABLE IF NOT EXISTS {t} (name {text} NOT NULL PRIMARY KEY, format_spec {text} NOT NULL, reset_period {text} NOT NULL, time_zone {text} NOT NULL, start_value {int} NOT NULL CHECK (start_value >= 1), step {int} NOT NULL CHECK (step >= 1)){strict}"
            ),
            select_one: sql(format!("SELECT {cols} FROM {t} WHERE name = ?")),
            select_all: format!("SELECT {cols} FROM {t} ORDER BY name"),
            insert: sql(format!(
                "INSERT INTO {t} ({cols}) VALUES (?, ?, ?, ?, ?, ?)"
            )),
        }
    }
}

fn definition(r: &AnyRow) -> Result<SequenceRow, StoreError> {
    let text = |i: usize| -> Result<String, StoreError> {
        r.try_get(i)
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    };
    let int = |i: usize| -> Result<u64, StoreError> {
        let v: i64 = r
            .try_get(i)
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        u64::try_from(v).map_err(|_| {
            StoreError::Invalid(format!(
                "negative value {v} in the number definitions table"
            ))
        })
    };
    Ok(SequenceRow {
        name: text(0)?,
        format: text(1)?,
        reset: text(2)?,
        time_zone: text(3)?,
        start: int(4)?,
        step: int(5)?,
    })
}

#[async_trait]
impl SequenceStore for SqlSegmentStore {
    async fn ensure_sequence_table(&self) -> Result<(), StoreError> {
        let q = sqlx::query(&self.sequences().create_table).execute(self.pool());
        self.timed(q).await.map(|_| ())
    }

    async fn sequence(&self, name: &str) -> Result<Option<SequenceRow>, StoreError> {
        let q = sqlx::query(&self.sequences().select_one)
            .bind(name)
            .fetch_optional(self.pool());
        self.timed(q).await?.as_ref().map(definition).transpose()
    }

    async fn sequences(&self) -> Result<Vec<SequenceRow>, StoreError> {
        let q = sqlx::query(&self.sequences().select_all).fetch_all(self.pool());
        self.timed(q).await?.iter().map(definition).collect()
    }

    async fn declare(&self, row: &SequenceRow) -> Result<bool, StoreError> {
        let int = |what: &str, v: u64| {
            i64::try_from(v).map_err(|_| {
                StoreError::Invalid(format!("{what} = {v} is out of range 1..={}", i64::MAX))
            })
        };
        let q = sqlx::query(&self.sequences().insert)
            .bind(&row.name)
            .bind(&row.format)
            .bind(&row.reset)
            .bind(&row.time_zone)
            .bind(int("start", row.start)?)
            .bind(int("step", row.step)?)
            .execute(self.pool());
        match self.timed_raw(q).await? {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_database_error()
                    .is_some_and(|d| d.is_unique_violation()) =>
            {
                Ok(false)
            }
            Err(e) => Err(StoreError::Unavailable(e.to_string())),
        }
    }
}
