//! OData query options: `$select`, `$filter` (the operators clients use), `$top`,
//! `$skiptoken`, `$deltatoken`, `$count` — parsed with Graph's error answers. Parsing
//! never panics, whatever the input.

use serde_json::{Map, Value};

use crate::ctx::GraphError;

/// Parsed query options.
#[derive(Debug, Default, Clone)]
pub(crate) struct Query {
    pub select: Option<Vec<String>>,
    pub filter: Option<Filter>,
    pub top: Option<u32>,
    pub skiptoken: Option<String>,
    pub deltatoken: Option<String>,
    /// The raw `$select` and `$filter`, carried into next links.
    pub raw_select: Option<String>,
    pub raw_filter: Option<String>,
}

/// A literal in a filter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Lit {
    Str(String),
    Bool(bool),
    Null,
    Num(f64),
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Ge,
    Le,
    Gt,
    Lt,
}

/// A filter expression.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Filter {
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    Cmp {
        prop: String,
        op: Op,
        value: Lit,
    },
    StartsWith {
        prop: String,
        value: String,
    },
    EndsWith {
        prop: String,
        value: String,
    },
    In {
        prop: String,
        values: Vec<Lit>,
    },
    /// `prop/any(x: x eq 'v')` or `prop/any(x: x/sub eq 'v')`.
    Any {
        prop: String,
        sub: Option<String>,
        op: Op,
        value: Lit,
    },
}

/// What a resource allows in `$select` and `$filter`.
pub(crate) struct Schema<'a> {
    pub type_name: &'a str,
    pub resource: &'a str,
    pub properties: &'a [&'a str],
    pub filterable: &'a [&'a str],
}

fn invalid_top(v: &str) -> GraphError {
    GraphError::bad_request(
        "Request_BadRequest",
        format!("Invalid page size specified: '{v}'. Must be between 1 and 999 inclusive."),
    )
}

/// Parses a raw query string. `allowed` lists the system options the endpoint takes.
pub(crate) fn parse_query(
    raw: Option<&str>,
    allowed: &[&str],
    schema: Option<&Schema<'_>>,
) -> Result<Query, GraphError> {
    let mut q = Query::default();
    let Some(raw) = raw else { return Ok(q) };
    for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
        let key = k.to_string();
        let name = key.trim_start_matches('$').to_ascii_lowercase();
        if !key.starts_with('$') && !matches!(name.as_str(), "skiptoken" | "deltatoken") {
            continue; // Custom (non-system) query options are ignored, as Graph does.
        }
        if !allowed.contains(&name.as_str()) {
            return Err(GraphError::bad_request(
                "BadRequest",
                format!(
                    "Query option '{key}' is not allowed. Make sure that the query option is supported by this resource."
                ),
            ));
        }
        match name.as_str() {
            "select" => {
                let props: Vec<String> = v
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                if let Some(s) = schema {
                    for p in &props {
                        if !s.properties.iter().any(|k| k.eq_ignore_ascii_case(p)) {
                            return Err(GraphError::bad_request(
                                "Request_BadRequest",
                                format!(
                                    "Could not find a property named '{p}' on type '{}'.",
                                    s.type_name
                                ),
                            ));
                        }
                    }
                }
                q.raw_select = Some(v.to_string());
                q.select = Some(props);
            }
            "filter" => {
                let f = parse_filter(&v).map_err(|e| {
                    GraphError::bad_request("BadRequest", format!("Invalid filter clause: {e}"))
                })?;
                if let Some(s) = schema {
                    check_filterable(&f, s)?;
                }
                q.raw_filter = Some(v.to_string());
                q.filter = Some(f);
            }
            "top" => {
                let n: u32 = v.trim().parse().map_err(|_| invalid_top(&v))?;
                if !(1..=999).contains(&n) {
                    return Err(invalid_top(&v));
                }
                q.top = Some(n);
            }
            "skiptoken" => q.skiptoken = Some(v.to_string()),
            "deltatoken" => q.deltatoken = Some(v.to_string()),
            "count" if !matches!(v.as_ref(), "true" | "false") => {
                return Err(GraphError::bad_request(
                    "BadRequest",
                    format!("Invalid value '{v}' for $count; use true or false."),
                ));
            }
            _ => {}
        }
    }
    Ok(q)
}

fn check_filterable(f: &Filter, s: &Schema<'_>) -> Result<(), GraphError> {
    let check = |p: &str| {
        if s.filterable.iter().any(|k| k.eq_ignore_ascii_case(p)) {
            Ok(())
        } else {
            Err(GraphError::bad_request(
                "Request_UnsupportedQuery",
                format!(
                    "Unsupported or invalid query filter clause specified for property '{p}' of resource '{}'.",
                    s.resource
                ),
            ))
        }
    };
    match f {
        Filter::And(a, b) | Filter::Or(a, b) => {
            check_filterable(a, s)?;
            check_filterable(b, s)
        }
        Filter::Not(a) => check_filterable(a, s),
        Filter::Cmp { prop, .. }
        | Filter::StartsWith { prop, .. }
        | Filter::EndsWith { prop, .. }
        | Filter::In { prop, .. } => check(prop),
        Filter::Any { prop, sub, .. } => match sub {
            Some(sub) => check(&format!("{prop}/{sub}")),
            None => check(prop),
        },
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    LParen,
    RParen,
    Comma,
    Colon,
}

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < chars.len() {
        let c = chars[i];
        if let Some(g) = guid_at(&chars, i) {
            out.push(Tok::Str(g));
            i += 36;
            continue;
        }
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '(' => {
                out.push(Tok::LParen);
                i += 1;
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1;
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1;
            }
            ':' => {
                out.push(Tok::Colon);
                i += 1;
            }
            '\'' => {
                let mut v = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(format!("unterminated string literal at position {i}")),
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            v.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(ch) => {
                            v.push(*ch);
                            i += 1;
                        }
                    }
                }
                out.push(Tok::Str(v));
            }
            c if c.is_ascii_digit() || c == '-' => {
                let start = i;
                i += 1;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '.' || chars[i] == '-')
                {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                match text.parse::<f64>() {
                    Ok(n) => out.push(Tok::Num(n)),
                    // A GUID literal (unquoted), as in x/skuId eq 1234-...
                    Err(_) if text.len() == 36 => out.push(Tok::Str(text)),
                    Err(_) => return Err(format!("syntax error at position {start}: `{text}`")),
                }
            }
            c if c.is_alphabetic() || c == '_' || c == '$' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '/' | '.' | '$'))
                {
                    i += 1;
                }
                out.push(Tok::Ident(chars[start..i].iter().collect()));
            }
            other => {
                return Err(format!(
                    "syntax error at position {i}: unexpected `{other}`"
                ));
            }
        }
    }
    Ok(out)
}

/// An unquoted GUID literal starting at `i` (8-4-4-4-12 hex digits).
fn guid_at(chars: &[char], i: usize) -> Option<String> {
    let s = chars.get(i..i + 36)?;
    let ok = s.iter().enumerate().all(|(k, c)| {
        if matches!(k, 8 | 13 | 18 | 23) {
            *c == '-'
        } else {
            c.is_ascii_hexdigit()
        }
    });
    let boundary = chars.get(i + 36).is_none_or(|c| !c.is_alphanumeric());
    (ok && boundary).then(|| s.iter().collect())
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    depth: usize,
}

const MAX_DEPTH: usize = 64;

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(s)) if s.eq_ignore_ascii_case(kw))
    }

    fn expect(&mut self, t: Tok) -> Result<(), String> {
        match self.next() {
            Some(ref got) if *got == t => Ok(()),
            got => Err(format!("expected {t:?}, found {got:?}")),
        }
    }

    fn or(&mut self) -> Result<Filter, String> {
        let mut left = self.and()?;
        while self.keyword("or") {
            self.pos += 1;
            let right = self.and()?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, String> {
        let mut left = self.unary()?;
        while self.keyword("and") {
            self.pos += 1;
            let right = self.unary()?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Filter, String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err("the filter is nested too deeply".into());
        }
        let r = if self.keyword("not") {
            self.pos += 1;
            self.unary().map(|f| Filter::Not(Box::new(f)))
        } else {
            self.primary()
        };
        self.depth -= 1;
        r
    }

    fn literal(&mut self) -> Result<Lit, String> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(Lit::Str(s)),
            Some(Tok::Num(n)) => Ok(Lit::Num(n)),
            Some(Tok::Ident(s)) if s == "true" => Ok(Lit::Bool(true)),
            Some(Tok::Ident(s)) if s == "false" => Ok(Lit::Bool(false)),
            Some(Tok::Ident(s)) if s == "null" => Ok(Lit::Null),
            other => Err(format!("expected a literal, found {other:?}")),
        }
    }

    fn op(&mut self) -> Result<Op, String> {
        match self.next() {
            Some(Tok::Ident(s)) => match s.to_ascii_lowercase().as_str() {
                "eq" => Ok(Op::Eq),
                "ne" => Ok(Op::Ne),
                "ge" => Ok(Op::Ge),
                "le" => Ok(Op::Le),
                "gt" => Ok(Op::Gt),
                "lt" => Ok(Op::Lt),
                other => Err(format!("unknown operator `{other}`")),
            },
            other => Err(format!("expected an operator, found {other:?}")),
        }
    }

    fn primary(&mut self) -> Result<Filter, String> {
        match self.next() {
            Some(Tok::LParen) => {
                let f = self.or()?;
                self.expect(Tok::RParen)?;
                Ok(f)
            }
            Some(Tok::Ident(name)) => {
                let lower = name.to_ascii_lowercase();
                if (lower == "startswith" || lower == "endswith")
                    && self.peek() == Some(&Tok::LParen)
                {
                    self.pos += 1;
                    let prop = match self.next() {
                        Some(Tok::Ident(p)) => p,
                        other => return Err(format!("expected a property, found {other:?}")),
                    };
                    self.expect(Tok::Comma)?;
                    let value = match self.next() {
                        Some(Tok::Str(v)) => v,
                        other => return Err(format!("expected a string, found {other:?}")),
                    };
                    self.expect(Tok::RParen)?;
                    return Ok(if lower == "startswith" {
                        Filter::StartsWith { prop, value }
                    } else {
                        Filter::EndsWith { prop, value }
                    });
                }
                if let Some(prop) = name.strip_suffix("/any") {
                    self.expect(Tok::LParen)?;
                    let var = match self.next() {
                        Some(Tok::Ident(v)) => v,
                        other => {
                            return Err(format!("expected a lambda variable, found {other:?}"));
                        }
                    };
                    self.expect(Tok::Colon)?;
                    let sub = match self.next() {
                        Some(Tok::Ident(s)) if s == var => None,
                        Some(Tok::Ident(s)) => match s.strip_prefix(&format!("{var}/")) {
                            Some(sub) => Some(sub.to_string()),
                            None => {
                                return Err(format!("the lambda must use its variable `{var}`"));
                            }
                        },
                        other => return Err(format!("expected `{var}`, found {other:?}")),
                    };
                    let op = self.op()?;
                    let value = self.literal()?;
                    self.expect(Tok::RParen)?;
                    return Ok(Filter::Any {
                        prop: prop.to_string(),
                        sub,
                        op,
                        value,
                    });
                }
                if self.keyword("in") {
                    self.pos += 1;
                    self.expect(Tok::LParen)?;
                    let mut values = vec![self.literal()?];
                    while self.peek() == Some(&Tok::Comma) {
                        self.pos += 1;
                        values.push(self.literal()?);
                    }
                    self.expect(Tok::RParen)?;
                    return Ok(Filter::In { prop: name, values });
                }
                let op = self.op()?;
                let value = self.literal()?;
                Ok(Filter::Cmp {
                    prop: name,
                    op,
                    value,
                })
            }
            other => Err(format!("syntax error: unexpected {other:?}")),
        }
    }
}

/// Parses a `$filter` expression.
pub(crate) fn parse_filter(s: &str) -> Result<Filter, String> {
    if s.len() > 8 * 1024 {
        return Err("the filter is too long".into());
    }
    let toks = tokenize(s)?;
    if toks.is_empty() {
        return Err("the filter is empty".into());
    }
    let mut p = Parser {
        toks,
        pos: 0,
        depth: 0,
    };
    let f = p.or()?;
    if p.pos < p.toks.len() {
        return Err(format!("syntax error: unexpected {:?}", p.toks[p.pos]));
    }
    Ok(f)
}

fn get_ci<'a>(obj: &'a Map<String, Value>, prop: &str) -> &'a Value {
    obj.get(prop)
        .or_else(|| {
            obj.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(prop))
                .map(|(_, v)| v)
        })
        .unwrap_or(&Value::Null)
}

fn compare(v: &Value, op: Op, lit: &Lit) -> bool {
    use std::cmp::Ordering;
    let ord = match (v, lit) {
        (Value::Null, Lit::Null) => Some(Ordering::Equal),
        (Value::Null, _) | (_, Lit::Null) => None,
        (Value::String(a), Lit::Str(b)) => Some(a.to_lowercase().cmp(&b.to_lowercase())),
        (Value::Bool(a), Lit::Bool(b)) => Some(a.cmp(b)),
        (Value::Number(a), Lit::Num(b)) => a.as_f64().and_then(|a| a.partial_cmp(b)),
        _ => None,
    };
    match op {
        Op::Eq => ord == Some(Ordering::Equal),
        Op::Ne => ord != Some(Ordering::Equal),
        Op::Ge => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
        Op::Le => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
        Op::Gt => ord == Some(Ordering::Greater),
        Op::Lt => ord == Some(Ordering::Less),
    }
}

/// Whether an object (its full JSON) matches the filter.
pub(crate) fn matches(f: &Filter, obj: &Map<String, Value>) -> bool {
    match f {
        Filter::And(a, b) => matches(a, obj) && matches(b, obj),
        Filter::Or(a, b) => matches(a, obj) || matches(b, obj),
        Filter::Not(a) => !matches(a, obj),
        Filter::Cmp { prop, op, value } => compare(get_ci(obj, prop), *op, value),
        Filter::StartsWith { prop, value } => get_ci(obj, prop)
            .as_str()
            .is_some_and(|s| s.to_lowercase().starts_with(&value.to_lowercase())),
        Filter::EndsWith { prop, value } => get_ci(obj, prop)
            .as_str()
            .is_some_and(|s| s.to_lowercase().ends_with(&value.to_lowercase())),
        Filter::In { prop, values } => {
            let v = get_ci(obj, prop);
            values.iter().any(|l| compare(v, Op::Eq, l))
        }
        Filter::Any {
            prop,
            sub,
            op,
            value,
        } => match get_ci(obj, prop) {
            Value::Array(items) => items.iter().any(|item| match sub {
                None => compare(item, *op, value),
                Some(s) => item
                    .as_object()
                    .is_some_and(|o| compare(get_ci(o, s), *op, value)),
            }),
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn filters_the_client_uses() {
        let u = obj(json!({
            "userPrincipalName": "Jane.Doe@contoso.com",
            "onPremisesImmutableId": "BAMCAQ==",
            "accountEnabled": true,
            "displayName": "Jane O'Doe",
            "proxyAddresses": ["SMTP:jane@contoso.com", "smtp:jd@contoso.com"],
            "assignedLicenses": [{"skuId": "f245ecc8-75af-4f8e-b61f-27d8114de5f3", "disabledPlans": []}]
        }));
        let t = |s: &str| matches(&parse_filter(s).expect(s), &u);
        assert!(t("userPrincipalName eq 'jane.doe@contoso.com'"));
        assert!(t("onPremisesImmutableId eq 'BAMCAQ=='"));
        assert!(!t("onPremisesImmutableId eq 'other'"));
        assert!(t(
            "accountEnabled eq true and startswith(displayName,'jane')"
        ));
        assert!(t("displayName eq 'Jane O''Doe'"));
        assert!(t("proxyAddresses/any(x:x eq 'smtp:jd@contoso.com')"));
        assert!(t(
            "assignedLicenses/any(x:x/skuId eq f245ecc8-75af-4f8e-b61f-27d8114de5f3)"
        ));
        assert!(t("userPrincipalName in ('a@b.c', 'jane.doe@contoso.com')"));
        assert!(t("not (accountEnabled eq false) or mail eq null"));
        assert!(t("endswith(userPrincipalName,'@contoso.com')"));
    }

    #[test]
    fn malformed_filters_are_errors_not_panics() {
        for bad in [
            "",
            "eq",
            "a eq",
            "a eq 'x",
            "(a eq 'x'",
            "a foo 'x'",
            "startswith(a)",
            "x/any(y:z eq 1)",
            "a eq 'x' extra",
            "#",
            "a eq 1-2-3",
        ] {
            assert!(parse_filter(bad).is_err(), "{bad:?}");
        }
        let deep = format!("{}a eq 1{}", "(".repeat(500), ")".repeat(500));
        assert!(parse_filter(&deep).is_err());
        let nots = format!("{}a eq 1", "not ".repeat(500));
        assert!(parse_filter(&nots).is_err());
    }

    #[test]
    fn top_select_and_unknown_options() {
        let schema = Schema {
            type_name: "microsoft.graph.user",
            resource: "User",
            properties: &["id", "displayName"],
            filterable: &["displayName"],
        };
        let allowed = ["select", "filter", "top", "skiptoken", "count"];
        assert_eq!(
            parse_query(Some("$top=999"), &allowed, Some(&schema))
                .expect("ok")
                .top,
            Some(999)
        );
        let e = parse_query(Some("$top=1000"), &allowed, Some(&schema)).expect_err("1000");
        assert_eq!(
            e.message,
            "Invalid page size specified: '1000'. Must be between 1 and 999 inclusive."
        );
        assert!(parse_query(Some("$top=0"), &allowed, Some(&schema)).is_err());
        assert!(parse_query(Some("$top=abc"), &allowed, Some(&schema)).is_err());
        let e = parse_query(Some("$select=id,nope"), &allowed, Some(&schema)).expect_err("nope");
        assert!(e.message.contains("'nope'"));
        let e = parse_query(Some("$orderby=id"), &allowed, Some(&schema)).expect_err("orderby");
        assert_eq!(e.code, "BadRequest");
        let e = parse_query(Some("$filter=id eq 'x'"), &allowed, Some(&schema))
            .expect_err("id not filterable");
        assert_eq!(e.code, "Request_UnsupportedQuery");
        assert!(
            parse_query(Some("foo=bar"), &allowed, Some(&schema)).is_ok(),
            "custom options ignored"
        );
    }
}
