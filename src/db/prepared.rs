//! Hand-written SQL that PostgreSQL parses and plans once per connection.
//!
//! `diesel::sql_query` marks its text unsafe to cache, so every run is
//! parsed and planned again; for the batched statements, with their common
//! table expressions over `unnest`, planning costs as much as running them.
//! A [`prepared`] statement is cached by the connection under its text.
//!
//! Its parameters `$1`, `$2`, … must each appear once, in that order: the
//! text is replayed piece by piece around the bound values.

use std::marker::PhantomData;

use diesel::{
    pg::Pg,
    query_builder::{AstPass, Query, QueryFragment, QueryId},
    result::QueryResult,
    serialize::ToSql,
    sql_types::{HasSqlType, Untyped},
};

/// A statement whose text never changes, run as a cached prepared statement.
#[derive(Debug, Clone, Copy)]
pub(super) struct Prepared(&'static str);

/// The statement `sql`, to bind parameters to and run.
pub(super) fn prepared(sql: &'static str) -> Prepared {
    debug_assert!(
        placeholders_in_order(sql),
        "parameters out of order in {sql}"
    );
    Prepared(sql)
}

/// Where each `$n` placeholder of `sql` starts and ends.
fn placeholders(sql: &str) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
    let bytes = sql.as_bytes();
    (0..bytes.len()).filter_map(move |start| {
        if bytes[start] != b'$' {
            return None;
        }
        let digits = bytes[start + 1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let end = start + 1 + digits;
        let number = sql.get(start + 1..end)?.parse().ok()?;
        Some((start, end, number))
    })
}

/// Whether the placeholders of `sql` are `$1`, `$2`, … each once, in order.
pub(super) fn placeholders_in_order(sql: &str) -> bool {
    placeholders(sql)
        .enumerate()
        .all(|(index, (_, _, number))| number == index + 1)
}

/// The text of `sql` after its `index`th placeholder (0: before the
/// first), up to the next one.
fn piece(sql: &'static str, index: usize) -> &'static str {
    let mut marks = placeholders(sql);
    let start = match index {
        0 => 0,
        _ => marks.nth(index - 1).map_or(sql.len(), |(_, end, _)| end),
    };
    let end = marks.next().map_or(sql.len(), |(start, _, _)| start);
    &sql[start..end]
}

impl QueryFragment<Pg> for Prepared {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(piece(self.0, 0));
        Ok(())
    }
}

/// A statement with its parameters bound so far, the last one `value`.
#[derive(Debug)]
pub(super) struct Bound<Statement, Value, SqlType> {
    statement: Statement,
    value: Value,
    sql: &'static str,
    /// Which parameter `value` is, from 1.
    index: usize,
    sql_type: PhantomData<SqlType>,
}

/// Binding parameters, `$1` first.
pub(super) trait Bind: Sized {
    /// The statement's text.
    fn sql(&self) -> &'static str;
    /// How many parameters are bound so far.
    fn bound(&self) -> usize;

    fn bind<SqlType, Value>(self, value: Value) -> Bound<Self, Value, SqlType> {
        Bound {
            sql: self.sql(),
            index: self.bound() + 1,
            statement: self,
            value,
            sql_type: PhantomData,
        }
    }
}

impl Bind for Prepared {
    fn sql(&self) -> &'static str {
        self.0
    }

    fn bound(&self) -> usize {
        0
    }
}

impl<S, V, T> Bind for Bound<S, V, T> {
    fn sql(&self) -> &'static str {
        self.sql
    }

    fn bound(&self) -> usize {
        self.index
    }
}

impl<Statement, Value, SqlType> QueryFragment<Pg> for Bound<Statement, Value, SqlType>
where
    Pg: HasSqlType<SqlType>,
    Statement: QueryFragment<Pg>,
    Value: ToSql<SqlType, Pg>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.statement.walk_ast(out.reborrow())?;
        // Writes `$index` into the text: the placeholders are numbered in order.
        out.push_bind_param::<SqlType, Value>(&self.value)?;
        out.push_sql(piece(self.sql, self.index));
        Ok(())
    }
}

// Keyed by their text (and parameter types) in the connection's statement
// cache, not by a Rust type.
impl QueryId for Prepared {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<S, V, T> QueryId for Bound<S, V, T> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for Prepared {
    type SqlType = Untyped;
}

impl<S, V, T> Query for Bound<S, V, T> {
    type SqlType = Untyped;
}

#[cfg(test)]
mod tests {
    use diesel::{debug_query, sql_types::Text};

    use super::*;

    #[test]
    fn the_text_is_rebuilt_around_the_parameters() {
        let sql = "SELECT $1::text[] AS a, x FROM t WHERE y = $2 AND z IN ($3)";
        let statement = prepared(sql)
            .bind::<Text, _>("a")
            .bind::<Text, _>("b")
            .bind::<Text, _>("c");
        let shown = debug_query::<Pg, _>(&statement).to_string();
        assert!(shown.starts_with(sql), "{shown}");
        assert!(shown.contains(r#"["a", "b", "c"]"#), "{shown}");
        assert_eq!(piece(sql, 0), "SELECT ");
        assert_eq!(piece(sql, 2), " AND z IN (");
        assert_eq!(piece(sql, 3), ")");
    }

    #[test]
    fn parameters_must_come_once_each_in_order() {
        assert!(placeholders_in_order("SELECT $1, $2, $3"));
        assert!(placeholders_in_order("SELECT 1"));
        assert!(!placeholders_in_order("SELECT $2, $1"));
        assert!(!placeholders_in_order("SELECT $1, $1"));
        assert!(placeholders_in_order(
            "SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10"
        ));
    }
}
