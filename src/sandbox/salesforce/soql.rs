//! The SOQL subset the sandbox understands:
//!
//! ```text
//! SELECT COUNT() | item [, item ...]     item: field (Name or Relationship.Name),
//!                                        CALENDAR_YEAR(field), CALENDAR_MONTH(field),
//!                                        COUNT(field)
//! FROM sObject
//! [WHERE condition]                      comparisons joined by AND / OR, with parentheses;
//!                                        AND and OR never mix at one level (as in SOQL)
//! [GROUP BY item [, item ...]]           fields and date functions
//! [ORDER BY field [ASC|DESC] [NULLS FIRST|LAST] [, ...]]
//! [LIMIT n]
//! ```
//!
//! A SELECT with a function or a GROUP BY is an aggregate query (`Select::Aggregate`);
//! whether its items are grouped or aggregated, as Salesforce demands, is checked with the
//! sObject (`plan.rs`).
//!
//! A comparison is `field op value` with `op` one of `= != <> < <= > >=`; values are unquoted
//! dateTime literals (`2023-01-01T00:00:00Z`, `...+05:00`, optional fraction), quoted strings
//! (`'001...'`, backslash escapes), numbers, `true`, `false`, `null`. Keywords and names are
//! case-insensitive. Whether the names exist is checked later, against the sObject.

use std::fmt;

/// A parse failure: the message Salesforce-style (`unexpected token: ...`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SoqlError(pub(crate) String);

impl fmt::Display for SoqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Select {
    Count,
    Fields(Vec<FieldPath>),
    Aggregate(Vec<Item>),
}

/// An item of an aggregate query's SELECT or GROUP BY.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Item {
    Field(FieldPath),
    Year(FieldPath),
    Month(FieldPath),
    CountOf(FieldPath),
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Item::Field(p) => write!(f, "{p}"),
            Item::Year(p) => write!(f, "CALENDAR_YEAR({p})"),
            Item::Month(p) => write!(f, "CALENDAR_MONTH({p})"),
            Item::CountOf(p) => write!(f, "COUNT({p})"),
        }
    }
}

/// `Name` or `Relationship.Name`, as written.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct FieldPath {
    pub(crate) relationship: Option<String>,
    pub(crate) name: String,
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.relationship {
            Some(r) => write!(f, "{r}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    pub(crate) fn holds(self, ord: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            Op::Eq => ord == Equal,
            Op::Ne => ord != Equal,
            Op::Lt => ord == Less,
            Op::Le => ord != Greater,
            Op::Gt => ord == Greater,
            Op::Ge => ord != Less,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Lit {
    /// Milliseconds since the epoch, UTC.
    DateTime(i64),
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Cmp {
        field: FieldPath,
        op: Op,
        value: Lit,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Query {
    pub(crate) select: Select,
    pub(crate) from: String,
    pub(crate) filter: Option<Expr>,
    pub(crate) group_by: Vec<Item>,
    /// Field and descending?
    pub(crate) order: Vec<(FieldPath, bool)>,
    pub(crate) limit: Option<u64>,
}

impl Query {
    /// The comparisons on `field` (case-insensitive) that every matching row must satisfy:
    /// those of the WHERE clause itself or of its top-level AND.
    pub(crate) fn top_level(&self, field: &str) -> Vec<(Op, &Lit)> {
        let parts: &[Expr] = match &self.filter {
            Some(Expr::And(parts)) => parts,
            Some(e) => std::slice::from_ref(e),
            None => &[],
        };
        parts
            .iter()
            .filter_map(|e| match e {
                Expr::Cmp {
                    field: f,
                    op,
                    value,
                } if f.relationship.is_none() && f.name.eq_ignore_ascii_case(field) => {
                    Some((*op, value))
                }
                _ => None,
            })
            .collect()
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    /// A number or dateTime literal, as written.
    Lit(String),
    Op(Op),
    LParen,
    RParen,
    Comma,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Word(w) | Tok::Lit(w) => f.write_str(w),
            Tok::Str(s) => write!(f, "'{s}'"),
            Tok::Op(op) => f.write_str(match op {
                Op::Eq => "=",
                Op::Ne => "!=",
                Op::Lt => "<",
                Op::Le => "<=",
                Op::Gt => ">",
                Op::Ge => ">=",
            }),
            Tok::LParen => f.write_str("("),
            Tok::RParen => f.write_str(")"),
            Tok::Comma => f.write_str(","),
        }
    }
}

fn tokenize(text: &str) -> Result<Vec<(Tok, usize)>, SoqlError> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let (tok, len) = next_token(text, i)?;
        out.push((tok, i + 1));
        i += len;
    }
    Ok(out)
}

/// The token that starts at byte `i` (not white space) and its length in bytes.
fn next_token(text: &str, i: usize) -> Result<(Tok, usize), SoqlError> {
    let b = text.as_bytes();
    let next = b.get(i + 1).copied();
    let run =
        |from: usize, more: fn(u8) -> bool| b[from..].iter().take_while(|&&c| more(c)).count();
    Ok(match b[i] {
        b'(' => (Tok::LParen, 1),
        b')' => (Tok::RParen, 1),
        b',' => (Tok::Comma, 1),
        b'=' => (Tok::Op(Op::Eq), 1),
        b'!' if next == Some(b'=') => (Tok::Op(Op::Ne), 2),
        b'<' => match next {
            Some(b'=') => (Tok::Op(Op::Le), 2),
            Some(b'>') => (Tok::Op(Op::Ne), 2),
            _ => (Tok::Op(Op::Lt), 1),
        },
        b'>' if next == Some(b'=') => (Tok::Op(Op::Ge), 2),
        b'>' => (Tok::Op(Op::Gt), 1),
        b'\'' => string_literal(text, i)?,
        b'0'..=b'9' | b'-' | b'+' | b'.' => {
            let len = 1 + run(i + 1, |c| {
                c.is_ascii_alphanumeric() || matches!(c, b'-' | b'+' | b':' | b'.')
            });
            (Tok::Lit(text[i..i + len].to_string()), len)
        }
        c if c.is_ascii_alphabetic() || c == b'_' => {
            let len = run(i, |c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.');
            (Tok::Word(text[i..i + len].to_string()), len)
        }
        _ => {
            let ch = text[i..].chars().next().unwrap_or('?');
            return Err(SoqlError(format!(
                "unexpected character '{ch}' at column {}",
                i + 1
            )));
        }
    })
}

/// The quoted string literal whose opening quote is at byte `i`, unescaped, and its length
/// with both quotes.
fn string_literal(text: &str, i: usize) -> Result<(Tok, usize), SoqlError> {
    let at = i + 1;
    let mut s = String::new();
    let mut chars = text[i + 1..].char_indices();
    loop {
        match chars.next() {
            None => {
                return Err(SoqlError(format!(
                    "unterminated string literal starting at column {at}"
                )));
            }
            Some((k, '\'')) => return Ok((Tok::Str(s), k + 2)),
            Some((_, '\\')) => match chars.next() {
                Some((_, e @ ('\'' | '\\' | '"'))) => s.push(e),
                Some((_, 'n')) => s.push('\n'),
                Some((_, 't')) => s.push('\t'),
                Some((_, 'r')) => s.push('\r'),
                other => {
                    let shown = other.map(|(_, c)| c.to_string()).unwrap_or_default();
                    return Err(SoqlError(format!(
                        "Invalid string literal: invalid escape \\{shown} at column {at}"
                    )));
                }
            },
            Some((_, ch)) => s.push(ch),
        }
    }
}

/// Parses a dateTime literal: `YYYY-MM-DDThh:mm:ss[.fff](Z|±hh:mm|±hhmm)`, to epoch millis.
pub(crate) fn parse_datetime(s: &str) -> Option<i64> {
    let t = chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .or_else(|| chrono::DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z").ok())?;
    // SOQL wants the `T` and an explicit zone; a date-only literal is not a dateTime.
    s.contains('T').then(|| t.timestamp_millis())
}

/// Plain fields without GROUP BY are an ordinary query, not an aggregate one.
fn plain_fields(select: Select, group_by: &[Item]) -> Select {
    match select {
        Select::Aggregate(items)
            if group_by.is_empty() && items.iter().all(|i| matches!(i, Item::Field(_))) =>
        {
            Select::Fields(
                items
                    .into_iter()
                    .filter_map(|i| match i {
                        Item::Field(f) => Some(f),
                        _ => None,
                    })
                    .collect(),
            )
        }
        other => other,
    }
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
}

fn is_keyword(w: &str, kw: &str) -> bool {
    w.eq_ignore_ascii_case(kw)
}

const RESERVED: &[&str] = &[
    "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "ORDER", "BY", "LIMIT", "OFFSET", "GROUP",
    "HAVING", "ASC", "DESC", "NULLS", "FIRST", "LAST", "LIKE", "IN", "INCLUDES", "EXCLUDES",
    "WITH", "FOR", "TYPEOF", "USING",
];

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(t, _)| t)
    }

    fn unexpected(&self) -> SoqlError {
        match self.toks.get(self.pos) {
            Some((t, at)) => SoqlError(format!("unexpected token: '{t}' at column {at}")),
            None => SoqlError("unexpected end of query".into()),
        }
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|(t, _)| t.clone());
        self.pos += 1;
        t
    }

    fn keyword(&mut self, kw: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Word(w)) if is_keyword(w, kw)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_keyword(&mut self, kw: &str) -> Result<(), SoqlError> {
        if self.keyword(kw) {
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    fn name(&mut self) -> Result<String, SoqlError> {
        match self.peek() {
            Some(Tok::Word(w))
                if !w.contains('.') && !RESERVED.iter().any(|r| is_keyword(w, r)) =>
            {
                let w = w.clone();
                self.pos += 1;
                Ok(w)
            }
            _ => Err(self.unexpected()),
        }
    }

    fn field(&mut self) -> Result<FieldPath, SoqlError> {
        match self.peek() {
            Some(Tok::Word(w)) if !RESERVED.iter().any(|r| is_keyword(w, r)) => {
                let w = w.clone();
                let parts: Vec<&str> = w.split('.').collect();
                let ok = |p: &str| {
                    p.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) && !p.ends_with('_')
                };
                let path = match parts.as_slice() {
                    [name] if ok(name) => FieldPath {
                        relationship: None,
                        name: name.to_string(),
                    },
                    [rel, name] if ok(rel) && ok(name) => FieldPath {
                        relationship: Some(rel.to_string()),
                        name: name.to_string(),
                    },
                    _ => return Err(self.unexpected()),
                };
                self.pos += 1;
                Ok(path)
            }
            _ => Err(self.unexpected()),
        }
    }

    /// `COUNT()` alone, or a list of items.
    fn select(&mut self) -> Result<Select, SoqlError> {
        let count_empty = matches!(self.peek(), Some(Tok::Word(w)) if is_keyword(w, "COUNT"))
            && self.toks.get(self.pos + 2).map(|(t, _)| t) == Some(&Tok::RParen);
        if count_empty {
            self.pos += 1;
            if self.next() != Some(Tok::LParen) || self.next() != Some(Tok::RParen) {
                self.pos -= 1;
                return Err(self.unexpected());
            }
            return Ok(Select::Count);
        }
        let mut items = vec![self.item()?];
        while self.peek() == Some(&Tok::Comma) {
            self.pos += 1;
            items.push(self.item()?);
        }
        Ok(Select::Aggregate(items))
    }

    /// A field, `CALENDAR_YEAR(field)`, `CALENDAR_MONTH(field)` or `COUNT(field)`.
    fn item(&mut self) -> Result<Item, SoqlError> {
        let function = match (self.peek(), self.toks.get(self.pos + 1).map(|(t, _)| t)) {
            (Some(Tok::Word(w)), Some(Tok::LParen)) => w.to_ascii_uppercase(),
            _ => return Ok(Item::Field(self.field()?)),
        };
        let wrap: fn(FieldPath) -> Item = match function.as_str() {
            "CALENDAR_YEAR" => Item::Year,
            "CALENDAR_MONTH" => Item::Month,
            "COUNT" => Item::CountOf,
            _ => return Err(self.unexpected()),
        };
        self.pos += 2;
        let field = self.field()?;
        if self.next() != Some(Tok::RParen) {
            self.pos -= 1;
            return Err(self.unexpected());
        }
        Ok(wrap(field))
    }

    /// `GROUP BY item [, item ...]`, if there.
    fn group_by(&mut self) -> Result<Vec<Item>, SoqlError> {
        let mut group_by = Vec::new();
        if self.keyword("GROUP") {
            self.expect_keyword("BY")?;
            group_by.push(self.item()?);
            while self.peek() == Some(&Tok::Comma) {
                self.pos += 1;
                group_by.push(self.item()?);
            }
        }
        Ok(group_by)
    }

    fn query(&mut self) -> Result<Query, SoqlError> {
        self.expect_keyword("SELECT")?;
        let select = self.select()?;
        self.expect_keyword("FROM")?;
        let from = self.name()?;
        let filter = if self.keyword("WHERE") {
            Some(self.condition()?)
        } else {
            None
        };
        let group_by = self.group_by()?;
        let select = plain_fields(select, &group_by);
        let mut order = Vec::new();
        if self.keyword("ORDER") {
            self.expect_keyword("BY")?;
            loop {
                let f = self.field()?;
                let desc = if self.keyword("DESC") {
                    true
                } else {
                    self.keyword("ASC");
                    false
                };
                if self.keyword("NULLS") && !(self.keyword("FIRST") || self.keyword("LAST")) {
                    return Err(self.unexpected());
                }
                order.push((f, desc));
                if self.peek() == Some(&Tok::Comma) {
                    self.pos += 1;
                } else {
                    break;
                }
            }
        }
        let limit = if self.keyword("LIMIT") {
            match self.next() {
                Some(Tok::Lit(n)) if n.bytes().all(|b| b.is_ascii_digit()) => Some(
                    n.parse()
                        .map_err(|_| SoqlError(format!("LIMIT {n} is too large")))?,
                ),
                _ => {
                    self.pos -= 1;
                    return Err(self.unexpected());
                }
            }
        } else {
            None
        };
        if self.pos < self.toks.len() {
            return Err(self.unexpected());
        }
        Ok(Query {
            select,
            from,
            filter,
            group_by,
            order,
            limit,
        })
    }

    /// `term (AND term)*` or `term (OR term)*`: mixing needs parentheses, as in SOQL.
    fn condition(&mut self) -> Result<Expr, SoqlError> {
        let first = self.term()?;
        let mut parts = vec![first];
        let mut joiner: Option<&'static str> = None;
        loop {
            let this = if self.keyword("AND") {
                "AND"
            } else if self.keyword("OR") {
                "OR"
            } else {
                break;
            };
            match joiner {
                Some(j) if j != this => {
                    self.pos -= 1;
                    return Err(SoqlError(format!(
                        "{} (use parentheses to mix AND and OR)",
                        self.unexpected()
                    )));
                }
                _ => joiner = Some(this),
            }
            parts.push(self.term()?);
        }
        Ok(match joiner {
            None => parts.pop().expect("one term"),
            Some("AND") => Expr::And(parts),
            Some(_) => Expr::Or(parts),
        })
    }

    fn term(&mut self) -> Result<Expr, SoqlError> {
        if self.peek() == Some(&Tok::LParen) {
            self.pos += 1;
            let inner = self.condition()?;
            if self.next() != Some(Tok::RParen) {
                self.pos -= 1;
                return Err(self.unexpected());
            }
            return Ok(inner);
        }
        let field = self.field()?;
        let op = match self.next() {
            Some(Tok::Op(op)) => op,
            _ => {
                self.pos -= 1;
                return Err(self.unexpected());
            }
        };
        let value = match self.next() {
            Some(Tok::Str(s)) => Lit::Str(s),
            Some(Tok::Lit(text)) => {
                if let Some(ms) = parse_datetime(&text) {
                    Lit::DateTime(ms)
                } else if let Ok(n) = text.parse::<f64>() {
                    Lit::Num(n)
                } else {
                    self.pos -= 1;
                    let at = self.toks[self.pos].1;
                    return Err(SoqlError(format!(
                        "value of filter criterion '{text}' at column {at} is not a valid dateTime or number"
                    )));
                }
            }
            Some(Tok::Word(w)) if is_keyword(&w, "null") => Lit::Null,
            Some(Tok::Word(w)) if is_keyword(&w, "true") => Lit::Bool(true),
            Some(Tok::Word(w)) if is_keyword(&w, "false") => Lit::Bool(false),
            _ => {
                self.pos -= 1;
                return Err(self.unexpected());
            }
        };
        Ok(Expr::Cmp { field, op, value })
    }
}

pub(crate) fn parse(text: &str) -> Result<Query, SoqlError> {
    let toks = tokenize(text)?;
    Parser { toks, pos: 0 }.query()
}

#[cfg(test)]
mod tests;
