//! A small dynamic-SQL builder with `$N` placeholders.
//!
//! sqlx's `QueryBuilder<Any>` numbers nothing (it writes `?`, which PostgreSQL rejects), so
//! queries whose shape depends on input (filters, multi-row inserts) are built here: SQL text
//! with numbered placeholders plus the values to bind, in order. Only our own literals ever go
//! into the text; every value is bound.

use futures_util::TryStreamExt;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, AssertSqlSafe, Either, Executor};

use crate::db::Backend;
use crate::store::{Corrupt, StoreError};

/// The highest `$N` SQLite accepts (SQLITE_MAX_VARIABLE_NUMBER since 3.32). A batch's
/// placeholders are numbered across all its statements, so a batch with more parameters is sent
/// in several parts.
const SQLITE_MAX_PARAMS: usize = 32_766;

/// A value to bind.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// An integer or NULL.
    Int(Option<i64>),
    /// A text or NULL.
    Text(Option<String>),
    /// A floating-point number or NULL (no cmdb column has one; a restore binds what a table holds).
    Float(Option<f64>),
    /// A boolean or NULL (likewise).
    Bool(Option<bool>),
}

impl From<i64> for Param {
    fn from(v: i64) -> Self {
        Param::Int(Some(v))
    }
}

impl From<Option<i64>> for Param {
    fn from(v: Option<i64>) -> Self {
        Param::Int(v)
    }
}

impl From<String> for Param {
    fn from(v: String) -> Self {
        Param::Text(Some(v))
    }
}

impl From<&str> for Param {
    fn from(v: &str) -> Self {
        Param::Text(Some(v.to_owned()))
    }
}

impl From<Option<String>> for Param {
    fn from(v: Option<String>) -> Self {
        Param::Text(v)
    }
}

/// `text` with LIKE's wildcards (`%`, `_`) and the escape character escaped, for a pattern
/// written with `ESCAPE '\'` (both backends).
pub fn like_escaped(text: &str) -> String {
    text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// SQL text and its parameters.
#[derive(Debug, Clone, Default)]
pub struct Sql {
    text: String,
    params: Vec<Param>,
}

impl Sql {
    /// Starts with `text`.
    pub fn new(text: impl Into<String>) -> Self {
        Sql { text: text.into(), params: Vec::new() }
    }

    /// Appends literal SQL (never input).
    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder bound to `value`.
    pub fn bind(&mut self, value: impl Into<Param>) -> &mut Self {
        self.params.push(value.into());
        self.text.push('$');
        self.text.push_str(&self.params.len().to_string());
        self
    }

    /// Appends `($1, $2, ...)` bound to `values`, for `IN`.
    pub fn bind_list<P: Into<Param>>(&mut self, values: impl IntoIterator<Item = P>) -> &mut Self {
        self.text.push('(');
        for (index, value) in values.into_iter().enumerate() {
            if index > 0 {
                self.text.push_str(", ");
            }
            self.bind(value);
        }
        self.text.push(')');
        self
    }

    /// Appends `(v1, v2, ...), (...)` rows, each row's values produced by `row`.
    pub fn values<T>(&mut self, items: &[T], mut row: impl FnMut(&mut RowBuilder<'_>, &T)) -> &mut Self {
        self.text.push_str(" VALUES ");
        for (index, item) in items.iter().enumerate() {
            if index > 0 {
                self.text.push_str(", ");
            }
            self.text.push('(');
            let mut builder = RowBuilder { sql: self, first: true };
            row(&mut builder, item);
            self.text.push(')');
        }
        self
    }

    /// Appends `other` as a further statement, renumbering its placeholders after ours (SQLite
    /// numbers `$N` across every statement of one query).
    fn append_statement(&mut self, other: &Sql) {
        if !self.text.is_empty() {
            self.text.push_str(";\n");
        }
        self.append(other);
    }

    /// Appends `other`'s text and parameters, renumbering its placeholders after ours (to build
    /// one statement of two, as a `WITH` clause and the statement it precedes).
    pub fn append(&mut self, other: &Sql) -> &mut Self {
        let offset = self.params.len();
        // Only our own literals are ever in the text, and none holds a `$`, so every `$` starts a
        // placeholder.
        let mut rest = other.text.as_str();
        while let Some(at) = rest.find('$') {
            self.text.push_str(&rest[..=at]);
            rest = &rest[at + 1..];
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            let number: usize = rest[..digits].parse().unwrap_or(0);
            self.text.push_str(&(number + offset).to_string());
            rest = &rest[digits..];
        }
        self.text.push_str(rest);
        self.params.extend(other.params.iter().cloned());
        self
    }

    /// The SQL text (for tests and logs).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The query, ready to execute.
    pub fn query(&self) -> Query<'static, Any, AnyArguments> {
        let mut query = sqlx::query(AssertSqlSafe(self.text.clone()));
        for param in &self.params {
            query = match param {
                Param::Int(v) => query.bind(*v),
                Param::Text(v) => query.bind(v.clone()),
                Param::Float(v) => query.bind(*v),
                Param::Bool(v) => query.bind(*v),
            };
        }
        query
    }
}

/// What one statement of a [`Batch`] did.
#[derive(Default)]
pub struct StatementDone {
    /// Rows inserted, updated or deleted (meaningless for a SELECT on SQLite, which reports the
    /// previous write's count).
    pub rows_affected: u64,
    /// Rows the statement returned.
    pub rows: Vec<AnyRow>,
}

/// Statements sent to the database together, in order; the first error stops the rest.
///
/// A SQLite connection lives on its own worker thread, and a write transaction's throughput is
/// bounded by the round trips to that thread (each is two thread wake-ups), not by SQLite's work.
/// So on SQLite a batch goes as one multi-statement query: one round trip for all of it. (sqlx
/// runs every statement of a SQLite query and reports each one's result; the `Executor`
/// interface used here is the one it documents for that.) PostgreSQL's extended protocol takes
/// one statement per query, so there the statements go one after another.
#[derive(Debug, Default)]
pub struct Batch {
    statements: Vec<Sql>,
}

impl Batch {
    /// Adds a statement and returns its index in [`Batch::run`]'s results.
    pub fn push(&mut self, statement: Sql) -> usize {
        self.statements.push(statement);
        self.statements.len() - 1
    }

    /// Runs the statements in order and returns what each one did.
    pub async fn run(self, conn: &mut AnyConnection, backend: Backend) -> Result<Vec<StatementDone>, StoreError> {
        let mut done = Vec::with_capacity(self.statements.len());
        match backend {
            Backend::Postgres => {
                for statement in &self.statements {
                    done.push(run_one(conn, statement, 1).await?.pop().unwrap_or_default());
                }
            }
            Backend::Sqlite => {
                let mut part = Sql::default();
                let mut count = 0;
                for statement in &self.statements {
                    if count > 0 && part.params.len() + statement.params.len() > SQLITE_MAX_PARAMS {
                        done.extend(run_one(conn, &part, count).await?);
                        part = Sql::default();
                        count = 0;
                    }
                    part.append_statement(statement);
                    count += 1;
                }
                if count > 0 {
                    done.extend(run_one(conn, &part, count).await?);
                }
            }
        }
        Ok(done)
    }
}

/// Runs `sql`, which holds `statements` statements, and returns each one's result.
async fn run_one(conn: &mut AnyConnection, sql: &Sql, statements: usize) -> Result<Vec<StatementDone>, StoreError> {
    let mut done = Vec::with_capacity(statements);
    let mut rows = Vec::new();
    let query = sql.query();
    let mut stream = conn.fetch_many(query);
    while let Some(step) = stream.try_next().await? {
        match step {
            Either::Right(row) => rows.push(row),
            Either::Left(result) => {
                done.push(StatementDone { rows_affected: result.rows_affected(), rows: std::mem::take(&mut rows) })
            }
        }
    }
    if done.len() != statements {
        return Err(Corrupt(format!("a batch of {statements} statements reported {} results", done.len())).into());
    }
    Ok(done)
}

/// Builds one row of a VALUES list.
pub struct RowBuilder<'a> {
    sql: &'a mut Sql,
    first: bool,
}

impl RowBuilder<'_> {
    fn separate(&mut self) {
        if !self.first {
            self.sql.text.push_str(", ");
        }
        self.first = false;
    }

    /// A bound value.
    pub fn bind(&mut self, value: impl Into<Param>) -> &mut Self {
        self.separate();
        self.sql.bind(value);
        self
    }

    /// A literal SQL expression (never input).
    pub fn expr(&mut self, text: &str) -> &mut Self {
        self.separate();
        self.sql.text.push_str(text);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_placeholders_in_order() {
        let mut sql = Sql::new("INSERT INTO t (a, b, c)");
        sql.values(&[1_i64, 2], |row, v| {
            row.bind(*v).expr("0").bind(format!("x{v}"));
        });
        sql.push(" WHERE x = ").bind("y");
        assert_eq!(sql.text(), "INSERT INTO t (a, b, c) VALUES ($1, 0, $2), ($3, 0, $4) WHERE x = $5");
        assert_eq!(sql.params.len(), 5);
    }

    #[test]
    fn appended_statements_number_on() {
        let mut first = Sql::new("UPDATE t SET a = ");
        first.bind(1_i64).push(" WHERE b = ").bind("x");
        let mut second = Sql::new("INSERT INTO u (a, b)");
        second.values(&[7_i64], |row, v| {
            row.bind(*v).bind("y");
        });
        let mut joined = Sql::default();
        joined.append_statement(&first);
        joined.append_statement(&second);
        assert_eq!(joined.text(), "UPDATE t SET a = $1 WHERE b = $2;\nINSERT INTO u (a, b) VALUES ($3, $4)");
        assert_eq!(joined.params, vec![Param::Int(Some(1)), "x".into(), Param::Int(Some(7)), "y".into()]);
    }
}
