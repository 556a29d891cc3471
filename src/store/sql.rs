//! Helpers for statements assembled at run time: a value type to bind in order, and multi-row inserts.
//!
//! sqlx's `QueryBuilder` writes `?` placeholders under the `Any` driver, which PostgreSQL rejects, so
//! dynamic statements here number their own `$n` placeholders, which SQLite also accepts.

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AnyConnection};

use super::{InScope, Scoped, StoreError};

/// A value to bind.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Text(String),
    OptText(Option<String>),
    Int(i64),
    OptInt(Option<i64>),
    Bool(bool),
    OptBool(Option<bool>),
}

pub(crate) fn bind_all<'q>(mut q: Query<'q, Any, AnyArguments>, args: Vec<Arg>) -> Query<'q, Any, AnyArguments> {
    for arg in args {
        q = match arg {
            Arg::Text(v) => q.bind(v),
            Arg::OptText(v) => q.bind(v),
            Arg::Int(v) => q.bind(v),
            Arg::OptInt(v) => q.bind(v),
            Arg::Bool(v) => q.bind(v),
            Arg::OptBool(v) => q.bind(v),
        };
    }
    q
}

/// A statement whose conditions are added one by one, each with its bound value.
pub(crate) struct Select {
    sql: String,
    args: Vec<Arg>,
}

impl Select {
    /// Start from a statement whose placeholders are `$1..=$n` for `args`.
    pub(crate) fn new(sql: &str, args: Vec<Arg>) -> Self {
        Self { sql: sql.to_owned(), args }
    }

    /// Append `clause`, whose single `#` becomes the next numbered placeholder for `arg`.
    pub(crate) fn push(&mut self, clause: &str, arg: Arg) -> &mut Self {
        self.args.push(arg);
        self.sql.push_str(&clause.replace('#', &format!("${}", self.args.len())));
        self
    }

    pub(crate) async fn fetch_all_in(self, s: Scoped<'_>) -> Result<Vec<sqlx::any::AnyRow>, StoreError> {
        bind_all(sqlx::query(sqlx::AssertSqlSafe(self.sql)), self.args).fetch_all_in(s).await
    }
}

/// Most values bound in one statement; under both databases' limits (SQLite 32766, PostgreSQL 65535).
const MAX_PARAMS: usize = 30_000;

/// Insert `rows` (all the same width) with `head` (`INSERT INTO t (a, b) VALUES`) and an optional
/// `tail` (`ON CONFLICT … DO UPDATE …`), in as few statements as the parameter limits allow.
pub(crate) async fn insert_rows(
    conn: &mut AnyConnection,
    head: &str,
    tail: &str,
    rows: Vec<Vec<Arg>>,
) -> Result<u64, StoreError> {
    let Some(width) = rows.first().map(Vec::len) else { return Ok(0) };
    let per_statement = (MAX_PARAMS / width).max(1);
    let mut written = 0;
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<Vec<Arg>> = rows.by_ref().take(per_statement).collect();
        let mut sql = String::from(head);
        let mut n = 0;
        for (i, row) in chunk.iter().enumerate() {
            debug_assert_eq!(row.len(), width, "every row has the same width");
            sql.push_str(if i == 0 { " (" } else { ", (" });
            for j in 0..width {
                n += 1;
                if j > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("${n}"));
            }
            sql.push(')');
        }
        sql.push(' ');
        sql.push_str(tail);
        let args = chunk.into_iter().flatten().collect();
        written += bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), args).execute(&mut *conn).await?.rows_affected();
    }
    Ok(written)
}
