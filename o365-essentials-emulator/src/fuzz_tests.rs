//! Property tests: nothing that parses request input panics, whatever the input.

use proptest::prelude::*;
use serde_json::Value;

use crate::{auth, batch, ctx, odata, route, users};

fn filterish() -> impl Strategy<Value = String> {
    let atoms = prop::sample::select(vec![
        "userPrincipalName",
        "eq",
        "ne",
        "and",
        "or",
        "not",
        "(",
        ")",
        "'x'",
        "'it''s'",
        "true",
        "null",
        "42",
        "-1.5",
        "startswith(",
        "endswith(",
        ",",
        "proxyAddresses/any(x:x",
        "x/skuId",
        ":",
        "in",
        "f245ecc8-75af-4f8e-b61f-27d8114de5f3",
        "'",
        "$",
        "@",
        " ",
    ]);
    prop::collection::vec(atoms, 0..24).prop_map(|v| v.join(" "))
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "requests",
                    "id",
                    "method",
                    "url",
                    "headers",
                    "body",
                    "dependsOn",
                    "x"
                ])
                .prop_map(str::to_string),
                inner,
                0..8
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn filters_never_panic(s in ".{0,200}", g in filterish()) {
        let _ = odata::parse_filter(&s);
        if let Ok(f) = odata::parse_filter(&g) {
            let _ = odata::matches(&f, &serde_json::Map::new());
        }
    }

    #[test]
    fn query_strings_never_panic(s in ".{0,200}") {
        let allowed = ["select", "filter", "top", "skiptoken", "count", "deltatoken"];
        let _ = odata::parse_query(Some(&s), &allowed, Some(&users::USER_SCHEMA));
        let _ = odata::parse_query(Some(&format!("$filter={s}&$top={s}&$select={s}")), &allowed, Some(&users::USER_SCHEMA));
    }

    #[test]
    fn bodies_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = ctx::parse_json_object(&bytes);
    }

    #[test]
    fn batch_payloads_never_panic(v in json_value()) {
        if let Value::Object(m) = v {
            let _ = batch::parse_for_test(&m);
        }
    }

    #[test]
    fn urls_never_panic(
        s in ".{0,120}",
        parts in prop::collection::vec(
            prop::sample::select(vec![
                "/v1.0", "/sharepoint", "/_api", "/users", "(", ")", "'", "''", "%27", "/",
                "é", "getbyid(", "sitegroups(", "microsoft.graph.", "()", "?", "@", ":",
                "8f3c2d4e-6a1b-4c5d-9e7f-0a1b2c3d4e5f", "[", "]",
            ]),
            0..16,
        ),
    ) {
        let hosts = route::PublicHosts::new(
            Some("https://graph.microsoft.com"),
            Some("https://login.microsoftonline.com"),
            None,
            Some("https://contoso.sharepoint.com/sites/x"),
        );
        let joined = parts.concat();
        for u in [s.as_str(), joined.as_str()] {
            let _ = route::normalize_uri(u);
            let _ = route::unknown_segment(u);
            let _ = route::by_id_argument(u);
            let _ = route::split_url(u);
            for host in ["contoso.sharepoint.com", u, "[", ""] {
                let _ = hosts.internal(Some(host), u);
            }
        }
    }

    #[test]
    fn tokens_never_panic(s in ".{0,300}") {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"k");
        let _ = auth::verify_token(&key, &s, 0);
    }
}
