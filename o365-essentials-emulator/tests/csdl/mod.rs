//! Checks JSON objects against the published Graph v1.0 schema (CSDL): every property
//! must be declared on the entity or complex type (or a base type), with a value of the
//! declared type.

use std::collections::HashMap;

use serde_json::Value;

#[derive(Debug, Default)]
struct TypeDef {
    base: Option<String>,
    props: HashMap<String, String>,
    is_abstract_open: bool,
}

pub struct Schema {
    types: HashMap<String, TypeDef>,
    enums: HashMap<String, Vec<String>>,
}

fn csdl_path() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("O365_GRAPH_CSDL") {
        return p.into();
    }
    // The published schema (microsoftgraph/msgraph-metadata, MIT), kept with the tests.
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/graph/v1.0-Prod.csdl")
}

impl Schema {
    pub fn load() -> Schema {
        let path = csdl_path();
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "the Graph schema is needed at {} (or set O365_GRAPH_CSDL): {e}",
                path.display()
            )
        });
        let doc = roxmltree::Document::parse_with_options(
            &text,
            roxmltree::ParsingOptions {
                allow_dtd: true,
                ..Default::default()
            },
        )
        .expect("CSDL parses");
        let mut types = HashMap::new();
        let mut enums = HashMap::new();
        let mut aliases = Vec::new();
        for schema in doc.descendants().filter(|n| n.has_tag_name("Schema")) {
            if let (Some(a), Some(ns)) = (schema.attribute("Alias"), schema.attribute("Namespace"))
            {
                aliases.push((format!("{a}."), format!("{ns}.")));
            }
        }
        let resolve = |t: &str| -> String {
            let (coll, inner) = match t
                .strip_prefix("Collection(")
                .and_then(|s| s.strip_suffix(')'))
            {
                Some(i) => (true, i),
                None => (false, t),
            };
            let mut name = inner.to_string();
            for (a, ns) in &aliases {
                if let Some(rest) = inner.strip_prefix(a.as_str()) {
                    name = format!("{ns}{rest}");
                }
            }
            if coll {
                format!("Collection({name})")
            } else {
                name
            }
        };
        for schema in doc.descendants().filter(|n| n.has_tag_name("Schema")) {
            let ns = schema.attribute("Namespace").unwrap_or("");
            for t in schema
                .children()
                .filter(|n| n.has_tag_name("EntityType") || n.has_tag_name("ComplexType"))
            {
                let name = format!("{ns}.{}", t.attribute("Name").unwrap_or(""));
                let mut def = TypeDef {
                    base: t.attribute("BaseType").map(&resolve),
                    is_abstract_open: t.attribute("OpenType") == Some("true"),
                    ..TypeDef::default()
                };
                for p in t
                    .children()
                    .filter(|n| n.has_tag_name("Property") || n.has_tag_name("NavigationProperty"))
                {
                    def.props.insert(
                        p.attribute("Name").unwrap_or("").to_string(),
                        resolve(p.attribute("Type").unwrap_or("")),
                    );
                }
                types.insert(name, def);
            }
            for e in schema.children().filter(|n| n.has_tag_name("EnumType")) {
                let name = format!("{ns}.{}", e.attribute("Name").unwrap_or(""));
                let members = e
                    .children()
                    .filter(|n| n.has_tag_name("Member"))
                    .filter_map(|m| m.attribute("Name"))
                    .map(str::to_string)
                    .collect();
                enums.insert(name, members);
            }
        }
        assert!(
            types.contains_key("microsoft.graph.user"),
            "the CSDL has no microsoft.graph.user"
        );
        Schema { types, enums }
    }

    fn property(&self, ty: &str, name: &str) -> Option<&str> {
        let mut cur = Some(ty.to_string());
        while let Some(t) = cur {
            let def = self.types.get(&t)?;
            if let Some(p) = def.props.get(name) {
                return Some(p);
            }
            cur = def.base.clone();
        }
        None
    }

    fn derives_from(&self, ty: &str, base: &str) -> bool {
        let mut cur = Some(ty.to_string());
        while let Some(t) = cur {
            if t == base {
                return true;
            }
            cur = self.types.get(&t).and_then(|d| d.base.clone());
        }
        false
    }

    /// Every problem found in `value` as an instance of `ty`.
    pub fn check(&self, ty: &str, value: &Value) -> Vec<String> {
        let mut errors = Vec::new();
        self.check_object(ty, value, "", &mut errors);
        errors
    }

    fn check_object(&self, ty: &str, value: &Value, at: &str, errors: &mut Vec<String>) {
        let Some(obj) = value.as_object() else {
            errors.push(format!("{at}: expected an object of {ty}, found {value}"));
            return;
        };
        let mut ty = ty.to_string();
        if let Some(t) = obj.get("@odata.type").and_then(Value::as_str) {
            let t = t.trim_start_matches('#').to_string();
            if !self.derives_from(&t, &ty) {
                errors.push(format!("{at}: @odata.type {t} is not a {ty}"));
            }
            ty = t;
        }
        if !self.types.contains_key(&ty) {
            errors.push(format!("{at}: unknown type {ty}"));
            return;
        }
        let open = self.types.get(&ty).is_some_and(|d| d.is_abstract_open);
        for (k, v) in obj {
            if k.starts_with('@') || k.contains("@odata.") {
                continue;
            }
            match self.property(&ty, k) {
                Some(pt) => self.check_value(pt, v, &format!("{at}/{k}"), errors),
                // Open types (user is one) take directory extensions, named extension_<app>_<name>;
                // any other undeclared name is a mistake.
                None if open && k.starts_with("extension_") => {}
                None => errors.push(format!("{at}/{k}: no property `{k}` on {ty}")),
            }
        }
    }

    fn check_value(&self, ty: &str, v: &Value, at: &str, errors: &mut Vec<String>) {
        if v.is_null() {
            return;
        }
        if let Some(inner) = ty
            .strip_prefix("Collection(")
            .and_then(|s| s.strip_suffix(')'))
        {
            match v.as_array() {
                Some(items) => {
                    for (i, item) in items.iter().enumerate() {
                        self.check_value(inner, item, &format!("{at}[{i}]"), errors);
                    }
                }
                None => errors.push(format!("{at}: expected a collection of {inner}, found {v}")),
            }
            return;
        }
        let ok = match ty {
            "Edm.String" | "Edm.Binary" | "Edm.Duration" | "Edm.TimeOfDay" => v.is_string(),
            "Edm.Boolean" => v.is_boolean(),
            "Edm.Int16" | "Edm.Int32" | "Edm.Int64" | "Edm.Byte" | "Edm.SByte" => {
                v.is_i64() || v.is_u64()
            }
            "Edm.Double" | "Edm.Single" | "Edm.Decimal" => v.is_number(),
            "Edm.Guid" => v.as_str().is_some_and(uuid_like),
            "Edm.DateTimeOffset" => v.as_str().is_some_and(|s| {
                time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                    .is_ok()
            }),
            "Edm.Date" => v.as_str().is_some_and(|s| s.len() == 10),
            t if self.enums.contains_key(t) => v.as_str().is_some_and(|s| {
                s.split(',')
                    .all(|m| self.enums[t].iter().any(|e| e == m.trim()))
            }),
            t if self.types.contains_key(t) => {
                self.check_object(t, v, at, errors);
                true
            }
            other => {
                errors.push(format!("{at}: the checker does not know the type {other}"));
                true
            }
        };
        if !ok {
            errors.push(format!("{at}: expected {ty}, found {v}"));
        }
    }
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36
        && s.chars().enumerate().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}
