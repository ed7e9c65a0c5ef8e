//! A small dynamic-SQL builder with `$N` placeholders.
//!
//! sqlx's `QueryBuilder<Any>` numbers nothing (it writes `?`, which PostgreSQL rejects), so
//! queries whose shape depends on input (filters, multi-row inserts) are built here: SQL text
//! with numbered placeholders plus the values to bind, in order. Only our own literals ever go
//! into the text; every value is bound.

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AssertSqlSafe};

/// A value to bind.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// An integer or NULL.
    Int(Option<i64>),
    /// A text or NULL.
    Text(Option<String>),
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
            };
        }
        query
    }
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
}
