//! Property tests for the SCIM filter language: the parser never panics, canonical text
//! parses back to the same tree, and the evaluator never panics and is consistent with the
//! boolean structure of the filter.

use chamilo_scim_proxy::directory::query::{
    matches, AttrInfo, AttrKind, AttrPath, AttrTypes, CompValue, CompareOp, Filter,
};
use chamilo_scim_proxy::scim::filter::{
    parse_attr_path, parse_filter, parse_patch_path, FilterLimits, PatchPath,
};
use proptest::prelude::*;
use serde_json::{Map, Number, Value};

/// Attribute names: a small pool (so that generated JSON and filters meet), keywords that are
/// also valid names, and arbitrary valid names.
fn attr_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "userName", "emails", "value", "type", "name", "givenName", "active", "meta",
            "lastModified", "primary", "a", "b",
        ])
        .prop_map(str::to_owned),
        1 => prop::sample::select(vec!["not", "and", "or", "pr", "eq", "true", "null", "$ref"])
            .prop_map(str::to_owned),
        2 => "[a-zA-Z][a-zA-Z0-9_-]{0,8}",
    ]
}

fn urn() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("urn:ietf:params:scim:schemas:core:2.0:User".to_owned()),
        Just("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User".to_owned()),
        "urn:[a-z]{1,5}(:[a-zA-Z0-9.-]{1,5}){0,3}",
    ]
}

fn attr_path() -> impl Strategy<Value = AttrPath> {
    (
        prop::option::weighted(0.2, urn()),
        attr_name(),
        prop::option::weighted(0.3, attr_name()),
    )
        .prop_map(|(urn, name, sub_attr)| AttrPath {
            urn,
            name,
            sub_attr,
        })
}

fn number() -> impl Strategy<Value = Number> {
    prop_oneof![
        any::<i64>().prop_map(Number::from),
        any::<u64>().prop_map(Number::from),
        any::<f64>().prop_filter_map("finite", Number::from_f64),
    ]
}

fn op() -> impl Strategy<Value = CompareOp> {
    prop::sample::select(vec![
        CompareOp::Eq,
        CompareOp::Ne,
        CompareOp::Co,
        CompareOp::Sw,
        CompareOp::Ew,
        CompareOp::Gt,
        CompareOp::Ge,
        CompareOp::Lt,
        CompareOp::Le,
    ])
}

/// A comparison the grammar admits (null and booleans only with eq/ne, numbers not with
/// co/sw/ew).
fn comparison(path: impl Strategy<Value = AttrPath>) -> impl Strategy<Value = Filter> {
    (path, op(), 0..4u8, any::<String>(), number(), any::<bool>()).prop_map(
        |(path, op, kind, s, n, b)| {
            let equality = matches!(op, CompareOp::Eq | CompareOp::Ne);
            let substring = matches!(op, CompareOp::Co | CompareOp::Sw | CompareOp::Ew);
            let value = match kind {
                1 if !substring => CompValue::Num(n),
                2 if equality => CompValue::Bool(b),
                3 if equality => CompValue::Null,
                _ => CompValue::Str(s),
            };
            Filter::Compare { path, op, value }
        },
    )
}

/// Filters without value paths (what may stand inside `[ … ]`).
fn inner_filter() -> impl Strategy<Value = Filter> {
    let leaf = prop_oneof![
        3 => comparison(attr_path()),
        1 => attr_path().prop_map(Filter::Present),
    ];
    combine(leaf.boxed(), 3)
}

fn combine(leaf: BoxedStrategy<Filter>, depth: u32) -> BoxedStrategy<Filter> {
    leaf.prop_recursive(depth, 24, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Filter::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Filter::Or(Box::new(a), Box::new(b))),
            inner.prop_map(|a| Filter::Not(Box::new(a))),
        ]
    })
    .boxed()
}

fn filter() -> impl Strategy<Value = Filter> {
    let leaf = prop_oneof![
        3 => comparison(attr_path()),
        1 => attr_path().prop_map(Filter::Present),
        1 => (attr_path(), inner_filter()).prop_map(|(attr, f)| Filter::ValuePath {
            attr,
            filter: Box::new(f),
        }),
    ];
    combine(leaf.boxed(), 4)
}

fn patch_path() -> impl Strategy<Value = PatchPath> {
    (
        attr_path(),
        prop::option::of((inner_filter(), prop::option::of(attr_name()))),
    )
        .prop_map(|(attr, bracket)| match bracket {
            None => PatchPath {
                attr,
                value_filter: None,
                sub_attr: None,
            },
            Some((f, sub_attr)) => PatchPath {
                attr,
                value_filter: Some(f),
                sub_attr,
            },
        })
}

/// Fragments that filters are made of, for token soup that often comes close to valid.
fn soup() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "userName",
        "emails",
        "urn:a:b:",
        "urn:x:2.0:User:name.givenName",
        ".value",
        ".",
        " ",
        "  ",
        "eq",
        "NE",
        "co",
        "gt",
        "pr",
        "and",
        "OR",
        "not",
        "(",
        ")",
        "[",
        "]",
        "\"x\"",
        "\"",
        "\\",
        "\\u00e9",
        "\\ud800",
        "12",
        "-1.5e3",
        "01",
        "true",
        "null",
        "é",
        "$ref",
        "\t",
        ":",
        "-",
    ]);
    prop::collection::vec(piece, 0..24).prop_map(|v| v.concat())
}

/// A JSON resource over the same name pool, with every JSON type.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number().prop_map(Value::Number),
        prop::sample::select(vec![
            "",
            "x",
            "X",
            "work",
            "bjensen@example.com",
            "2011-05-13T04:42:34Z",
            "2011-05-13T04:42:34+02:00",
            "True",
            "é",
        ])
        .prop_map(|s| Value::String(s.to_owned())),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        attr_name(),
                        Just(
                            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User".to_owned()
                        ),
                        Just("USERNAME".to_owned()),
                    ],
                    inner
                ),
                0..5
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Types derived from the name, so that every kind and caseExact value gets exercised.
struct HashedTypes;

impl AttrTypes for HashedTypes {
    fn lookup(&self, parent: Option<&AttrPath>, path: &AttrPath) -> Option<AttrInfo> {
        let key = format!(
            "{}{}{}",
            parent.map(|p| p.name.as_str()).unwrap_or(""),
            path.name,
            path.sub_attr.as_deref().unwrap_or("")
        );
        let h = key
            .bytes()
            .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        let kinds = [
            AttrKind::String,
            AttrKind::Boolean,
            AttrKind::Decimal,
            AttrKind::Integer,
            AttrKind::DateTime,
            AttrKind::Binary,
            AttrKind::Reference,
            AttrKind::Complex,
        ];
        if h % 9 == 8 {
            return None;
        }
        Some(AttrInfo {
            kind: kinds[(h % 9) as usize],
            case_exact: h % 2 == 0,
            multi_valued: h % 3 == 0,
        })
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parser_never_panics_on_arbitrary_text(text in "\\PC{0,120}") {
        let _ = parse_filter(&text, &FilterLimits::default());
        let _ = parse_patch_path(&text);
        let _ = parse_attr_path(&text);
    }

    #[test]
    fn parser_never_panics_on_token_soup(text in soup()) {
        let limits = FilterLimits { max_length: 200, max_depth: 4 };
        match parse_filter(&text, &limits) {
            Ok(f) => {
                // Whatever parsed has a canonical form that parses to the same tree.
                let canonical = f.to_string();
                let again = parse_filter(&canonical, &FilterLimits::default());
                prop_assert_eq!(again, Ok(f), "canonical {:?} of {:?}", canonical, text);
            }
            Err(e) => prop_assert!(e.position <= text.chars().count(), "{e} for {text:?}"),
        }
        if let Ok(p) = parse_patch_path(&text) {
            prop_assert_eq!(parse_patch_path(&p.to_string()), Ok(p));
        }
    }

    #[test]
    fn display_round_trips(f in filter()) {
        let text = f.to_string();
        prop_assert_eq!(parse_filter(&text, &FilterLimits::default()), Ok(f), "text {:?}", text);
    }

    #[test]
    fn patch_and_attr_paths_round_trip(p in patch_path(), a in attr_path()) {
        let text = p.to_string();
        prop_assert_eq!(parse_patch_path(&text), Ok(p), "text {:?}", text);
        let text = a.to_string();
        prop_assert_eq!(parse_attr_path(&text), Ok(a), "text {:?}", text);
    }

    #[test]
    fn evaluator_never_panics_and_respects_boolean_structure(
        f in filter(),
        g in filter(),
        resource in json_value(),
    ) {
        let t = &HashedTypes;
        let (mf, mg) = (matches(&f, &resource, t), matches(&g, &resource, t));
        let not_f = Filter::Not(Box::new(f.clone()));
        prop_assert_eq!(matches(&not_f, &resource, t), !mf);
        let both = Filter::And(Box::new(f.clone()), Box::new(g.clone()));
        prop_assert_eq!(matches(&both, &resource, t), mf && mg);
        let either = Filter::Or(Box::new(f), Box::new(g));
        prop_assert_eq!(matches(&either, &resource, t), mf || mg);
    }

    #[test]
    fn ne_is_not_eq(path in attr_path(), value in "[a-zA-Z]{0,3}", resource in json_value()) {
        let t = &HashedTypes;
        let compare = |op| Filter::Compare { path: path.clone(), op, value: CompValue::Str(value.clone()) };
        let ne = matches(&compare(CompareOp::Ne), &resource, t);
        let eq = matches(&compare(CompareOp::Eq), &resource, t);
        prop_assert_eq!(ne, !eq);
    }

    #[test]
    fn pr_agrees_with_eq_null(path in attr_path(), resource in json_value()) {
        let t = &HashedTypes;
        let present = matches(&Filter::Present(path.clone()), &resource, t);
        let eq_null = Filter::Compare { path, op: CompareOp::Eq, value: CompValue::Null };
        prop_assert_eq!(matches(&eq_null, &resource, t), !present);
    }
}
