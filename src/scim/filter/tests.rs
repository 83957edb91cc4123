use serde_json::{json, Value};

use super::*;
use crate::directory::query::*;

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const CORE_USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

fn parse(s: &str) -> Filter {
    match parse_filter(s, &FilterLimits::default()) {
        Ok(f) => f,
        Err(e) => panic!("{s:?} should parse: {e}"),
    }
}

fn parse_err(s: &str) -> FilterError {
    match parse_filter(s, &FilterLimits::default()) {
        Ok(f) => panic!("{s:?} should be rejected, parsed as {f:?}"),
        Err(e) => e,
    }
}

fn path(s: &str) -> AttrPath {
    parse_attr_path(s).unwrap()
}

fn cmp(p: &str, op: CompareOp, value: CompValue) -> Filter {
    Filter::Compare {
        path: path(p),
        op,
        value,
    }
}

fn s(v: &str) -> CompValue {
    CompValue::Str(v.to_owned())
}

fn and(a: Filter, b: Filter) -> Filter {
    Filter::And(Box::new(a), Box::new(b))
}

fn or(a: Filter, b: Filter) -> Filter {
    Filter::Or(Box::new(a), Box::new(b))
}

fn not(a: Filter) -> Filter {
    Filter::Not(Box::new(a))
}

fn pr(p: &str) -> Filter {
    Filter::Present(path(p))
}

fn vp(p: &str, f: Filter) -> Filter {
    Filter::ValuePath {
        attr: path(p),
        filter: Box::new(f),
    }
}

// ---------------------------------------------------------------- parsing: valid filters

/// (input, canonical display) — every one must also re-parse to the same AST.
const VALID: &[(&str, &str)] = &[
    // RFC 7644 §3.4.2.2 examples.
    (r#"userName eq "bjensen""#, r#"userName eq "bjensen""#),
    (
        r#"name.familyName co "O'Malley""#,
        r#"name.familyName co "O'Malley""#,
    ),
    (r#"userName sw "J""#, r#"userName sw "J""#),
    (
        r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#,
        r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#,
    ),
    ("title pr", "title pr"),
    (
        r#"meta.lastModified gt "2011-05-13T04:42:34Z""#,
        r#"meta.lastModified gt "2011-05-13T04:42:34Z""#,
    ),
    (
        r#"meta.lastModified ge "2011-05-13T04:42:34Z""#,
        r#"meta.lastModified ge "2011-05-13T04:42:34Z""#,
    ),
    (
        r#"meta.lastModified lt "2011-05-13T04:42:34Z""#,
        r#"meta.lastModified lt "2011-05-13T04:42:34Z""#,
    ),
    (
        r#"meta.lastModified le "2011-05-13T04:42:34Z""#,
        r#"meta.lastModified le "2011-05-13T04:42:34Z""#,
    ),
    (
        r#"title pr and userType eq "Employee""#,
        r#"title pr and userType eq "Employee""#,
    ),
    (
        r#"title pr or userType eq "Intern""#,
        r#"title pr or userType eq "Intern""#,
    ),
    (
        r#"schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User""#,
        r#"schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User""#,
    ),
    (
        r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
        r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
    ),
    (
        r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
        r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
    ),
    (
        r#"userType eq "Employee" and (emails.type eq "work")"#,
        r#"userType eq "Employee" and emails.type eq "work""#,
    ),
    (
        r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#,
        r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#,
    ),
    (
        r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#,
        r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#,
    ),
    // Entra ID and Okta (scim-interop.md).
    (
        r#"userName eq "ryan@contoso.com""#,
        r#"userName eq "ryan@contoso.com""#,
    ),
    (
        r#"externalId eq "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef""#,
        r#"externalId eq "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef""#,
    ),
    (
        r#"displayName eq "Sales Team""#,
        r#"displayName eq "Sales Team""#,
    ),
    (
        r#"emails[type eq "work"].value eq "x@contoso.com""#,
        r#"emails[type eq "work" and value eq "x@contoso.com"]"#,
    ),
    (
        r#"emails[type eq "work"].value pr"#,
        r#"emails[type eq "work" and value pr]"#,
    ),
    (
        r#"userName eq "x" and emails[type eq "work"].value eq "y""#,
        r#"userName eq "x" and emails[type eq "work" and value eq "y"]"#,
    ),
    // Case-insensitive operators and keywords; whitespace runs; literals.
    (
        r#"userName EQ "a" AND active Eq TRUE Or not(title PR)"#,
        r#"userName eq "a" and active eq true or not (title pr)"#,
    ),
    (
        "  userName\teq   \"a\"  and\n title  pr ",
        r#"userName eq "a" and title pr"#,
    ),
    (r#"userName eq"a""#, r#"userName eq "a""#),
    ("(title pr)and(nickName pr)", "title pr and nickName pr"),
    ("active eq false", "active eq false"),
    ("active ne FALSE", "active ne false"),
    ("manager eq NULL", "manager eq null"),
    ("x ne null", "x ne null"),
    ("age gt 42", "age gt 42"),
    ("age ge -7", "age ge -7"),
    ("score lt 3.25", "score lt 3.25"),
    ("score le 1e3", "score le 1000.0"),
    ("score le 2.5E-2", "score le 0.025"),
    (
        r#"name.familyName eq "\"q\" \\ \u00e9 \/""#,
        r#"name.familyName eq "\"q\" \\ é /""#,
    ),
    (r#"x eq "tab\tnl\n""#, r#"x eq "tab\tnl\n""#),
    (r#"x eq """#, r#"x eq """#),
    // URN-qualified extension paths: the URN contains dots and colons.
    (
        r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "7""#,
        r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "7""#,
    ),
    (
        r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "26118915-6090-4610-87e4-49d8ca9f808d""#,
        r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "26118915-6090-4610-87e4-49d8ca9f808d""#,
    ),
    // `$ref`, hyphens and underscores in names.
    (r#"members[$ref eq "x"]"#, r#"members[$ref eq "x"]"#),
    ("my-attr_2 pr", "my-attr_2 pr"),
    // Attributes named like keywords, told apart by position.
    ("not pr", "not pr"),
    (r#"and eq "x""#, r#"and eq "x""#),
    ("pr pr", "pr pr"),
    ("not[or pr] or and[not pr]", "not[or pr] or and[not pr]"),
    // Nested parentheses and not.
    ("((((a pr))))", "a pr"),
    ("not (not (a pr))", "not (not (a pr))"),
    ("a pr or (b pr or c pr)", "a pr or (b pr or c pr)"),
    ("(a pr or b pr) and c pr", "(a pr or b pr) and c pr"),
    ("a pr and (b pr and c pr)", "a pr and (b pr and c pr)"),
    (
        r#"emails[not (type eq "home")]"#,
        r#"emails[not (type eq "home")]"#,
    ),
    (
        r#"emails[(type eq "work" or type eq "home") and primary eq true]"#,
        r#"emails[(type eq "work" or type eq "home") and primary eq true]"#,
    ),
];

#[test]
fn valid_filters_parse_display_and_round_trip() {
    for (input, canonical) in VALID {
        let f = parse(input);
        assert_eq!(&f.to_string(), canonical, "display of {input:?}");
        assert_eq!(parse(canonical), f, "round trip of {input:?}");
    }
}

#[test]
fn rfc_example_asts() {
    assert_eq!(
        parse(r#"userName eq "bjensen""#),
        cmp("userName", CompareOp::Eq, s("bjensen"))
    );
    assert_eq!(
        parse(
            r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#
        ),
        and(
            cmp("userType", CompareOp::Ne, s("Employee")),
            not(or(
                cmp("emails", CompareOp::Co, s("example.com")),
                cmp("emails.value", CompareOp::Co, s("example.org")),
            )),
        )
    );
    assert_eq!(
        parse(
            r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#
        ),
        or(
            vp(
                "emails",
                and(
                    cmp("type", CompareOp::Eq, s("work")),
                    cmp("value", CompareOp::Co, s("@example.com"))
                )
            ),
            vp(
                "ims",
                and(
                    cmp("type", CompareOp::Eq, s("xmpp")),
                    cmp("value", CompareOp::Co, s("@foo.com"))
                )
            ),
        )
    );
}

#[test]
fn urn_paths_split_at_the_last_colon() {
    let f = parse(&format!("{ENTERPRISE}:manager.value eq \"m\""));
    let Filter::Compare { path, .. } = f else {
        panic!("not a comparison: {f:?}");
    };
    assert_eq!(path.urn.as_deref(), Some(ENTERPRISE));
    assert_eq!(path.name, "manager");
    assert_eq!(path.sub_attr.as_deref(), Some("value"));

    let p = path_of(&format!("{CORE_USER}:name.givenName"));
    assert_eq!(p.urn.as_deref(), Some(CORE_USER));
    assert_eq!(
        (p.name.as_str(), p.sub_attr.as_deref()),
        ("name", Some("givenName"))
    );
}

fn path_of(s: &str) -> AttrPath {
    parse_attr_path(s).unwrap()
}

#[test]
fn entra_value_path_form_ands_the_sub_attribute_comparison() {
    assert_eq!(
        parse(r#"emails[type eq "work"].value eq "x""#),
        vp(
            "emails",
            and(
                cmp("type", CompareOp::Eq, s("work")),
                cmp("value", CompareOp::Eq, s("x"))
            )
        )
    );
    // Also after a URN-qualified attribute, and with an or inside the brackets.
    assert_eq!(
        parse(r#"addresses[type eq "work" or primary eq true].postalCode sw "75""#),
        vp(
            "addresses",
            and(
                or(
                    cmp("type", CompareOp::Eq, s("work")),
                    cmp("primary", CompareOp::Eq, CompValue::Bool(true))
                ),
                cmp("postalCode", CompareOp::Sw, s("75"))
            )
        )
    );
}

#[test]
fn precedence_not_over_and_over_or() {
    assert_eq!(
        parse("a pr or b pr and c pr"),
        or(pr("a"), and(pr("b"), pr("c")))
    );
    assert_eq!(
        parse("a pr and b pr or c pr"),
        or(and(pr("a"), pr("b")), pr("c"))
    );
    assert_eq!(parse("not (a pr) and b pr"), and(not(pr("a")), pr("b")));
    assert_eq!(
        parse("a pr or b pr or c pr"),
        or(or(pr("a"), pr("b")), pr("c"))
    );
    assert_eq!(
        parse("a pr and b pr and c pr"),
        and(and(pr("a"), pr("b")), pr("c"))
    );
    assert_eq!(
        parse("a pr and (b pr or c pr)"),
        and(pr("a"), or(pr("b"), pr("c")))
    );
}

#[test]
fn literal_values() {
    let lit = |s: &str| match parse(&format!("x eq {s}")) {
        Filter::Compare { value, .. } => value,
        other => panic!("{other:?}"),
    };
    assert_eq!(lit("42"), CompValue::Num(42.into()));
    assert_eq!(lit("-42"), CompValue::Num((-42).into()));
    assert_eq!(lit("1.5").to_string(), "1.5");
    assert_eq!(lit("1.5e2").to_string(), "150.0");
    assert_eq!(lit("18446744073709551615"), CompValue::Num(u64::MAX.into()));
    assert_eq!(
        lit("1.2262057145312795e+286").to_string(),
        "1.2262057145312795e+286"
    );
    assert_eq!(
        lit("18446744073709551616").to_string(),
        "1.8446744073709552e+19"
    );
    assert_eq!(lit("tRuE"), CompValue::Bool(true));
    assert_eq!(lit("False"), CompValue::Bool(false));
    assert_eq!(lit("null"), CompValue::Null);
    assert_eq!(lit(r#""\u00e9\"""#), s("é\""));
}

// ---------------------------------------------------------------- parsing: errors

/// (input, position, fragment of the message).
const INVALID: &[(&str, usize, &str)] = &[
    ("", 0, "empty filter"),
    ("   ", 0, "empty filter"),
    (
        r#"userName equals "x""#,
        9,
        "expected a comparison operator (eq, ne, co, sw, ew, gt, ge, lt, le, pr) after 'userName', found 'equals'",
    ),
    ("userName", 8, "expected a comparison operator"),
    (r#"userName "x""#, 9, "found the string \"x\""),
    ("userName eq", 11, "expected a value after 'eq'"),
    ("userName eq and", 12, "expected a value after 'eq'"),
    ("userName eq bjensen", 12, "found 'bjensen'"),
    ("userName eq 01", 12, "invalid number '01'"),
    ("userName eq 1e999", 12, "invalid number"),
    ("userName eq -", 12, "invalid number"),
    (r#"userName eq "abc"#, 12, "unterminated string"),
    (r#"userName eq "a\xb""#, 14, "invalid escape '\\x'"),
    (r#"userName eq "\u00""#, 13, "four hex digits"),
    (
        r#"userName eq "a" extra"#,
        16,
        "unexpected 'extra' after a complete filter (expected 'and', 'or' or the end)",
    ),
    (r#"userName eq "a" "b""#, 16, "unexpected the string \"b\""),
    (r#"(userName eq "a""#, 16, "expected ')' to close the '(' at position 0"),
    (r#"userName eq "a")"#, 15, "unbalanced ')'"),
    ("((a pr)", 7, "expected ')' to close the '(' at position 0"),
    ("()", 1, "expected an attribute name, '(' or 'not', found ')'"),
    ("a pr and", 8, "found the end of the filter"),
    ("a pr or or b pr", 8, "expected an attribute name, '(' or 'not', found 'or'"),
    ("and a pr", 0, "found 'and'"),
    ("a pr AND", 8, "found the end of the filter"),
    ("not a pr", 4, "expected '(' after 'not', found 'a'"),
    ("not", 3, "expected '(' after 'not'"),
    ("not ()", 5, "found ')'"),
    (r#"emails[type eq "work""#, 21, "expected ']' to close the '[' at position 6"),
    (r#"emails[type eq "work"]]"#, 22, "unbalanced ']'"),
    ("emails[]", 7, "empty value filter"),
    (
        r#"emails[type[value eq "x"] eq "work"]"#,
        11,
        "'[' inside '['",
    ),
    (
        r#"emails[type eq "work" and x[y pr]]"#,
        27,
        "'[' inside '['",
    ),
    (r#"[type eq "work"]"#, 0, "expected an attribute name"),
    (r#"emails[type eq "work"].value"#, 28, "expected a comparison operator"),
    (r#"emails[type eq "work"].va!ue eq "x""#, 25, "invalid character '!'"),
    (r#"emails[type eq "work"].a.b eq "x""#, 24, "only one sub-attribute"),
    (r#"emails[type eq "work"]. eq "x""#, 23, "missing sub-attribute name"),
    (r#".value eq "x""#, 0, "expected an attribute name, found '.value'"),
    (r#"user!name eq "x""#, 4, "invalid character '!' in attribute name 'user!name'"),
    (r#"1user eq "x""#, 0, "must start with a letter"),
    (r#"name.given.x eq "x""#, 10, "more than one sub-attribute level"),
    (r#"name. eq "x""#, 5, "missing sub-attribute name"),
    (r#"foo:bar eq "x""#, 0, "must start with a schema URN"),
    (
        r#"urn:ietf:params:scim:schemas:core:2.0:User: eq "x""#,
        43,
        "missing attribute name after the schema URN",
    ),
    ("active gt true", 10, "'gt' cannot be used with 'true'"),
    ("active co false", 10, "'co' cannot be used with 'false'"),
    ("manager lt null", 11, "'lt' cannot be used with 'null'"),
    ("age co 4", 7, "'co' cannot be used with '4'"),
    (r#"userName eq 'x'"#, 12, "expected a value"),
];

#[test]
fn malformed_filters_say_where_and_why() {
    for (input, position, fragment) in INVALID {
        let e = parse_err(input);
        assert!(
            e.message.contains(fragment),
            "{input:?}: message {:?} lacks {fragment:?}",
            e.message
        );
        assert_eq!(e.position, *position, "{input:?}: {e}");
        assert!(e
            .to_string()
            .starts_with(&format!("at position {position}: ")));
    }
}

#[test]
fn error_positions_count_characters_not_bytes() {
    let e = parse_err(r#"mail eq "éé" oops"#);
    // 'é' is two bytes but one character.
    assert_eq!(e.position, 13, "{e}");
}

#[test]
fn length_limit() {
    let limits = FilterLimits {
        max_length: 20,
        max_depth: 8,
    };
    let ok = r#"userName eq "abcdef""#; // exactly 20 characters
    assert_eq!(ok.chars().count(), 20);
    assert!(parse_filter(ok, &limits).is_ok());
    let e = parse_filter(r#"userName eq "abcdefg""#, &limits).unwrap_err();
    assert_eq!(e.position, 20);
    assert!(
        e.message.contains("longer than the limit of 20 characters"),
        "{e}"
    );
    // Characters, not bytes.
    assert!(parse_filter(r#"userName eq "éééééé""#, &limits).is_ok());
}

#[test]
fn depth_limit() {
    let limits = FilterLimits {
        max_length: 10_000,
        max_depth: 3,
    };
    assert!(parse_filter("(((a pr)))", &limits).is_ok());
    let e = parse_filter("((((a pr))))", &limits).unwrap_err();
    assert_eq!(e.position, 3);
    assert!(e.message.contains("deeper than 3 levels"), "{e}");
    // not and value filters count too.
    assert!(parse_filter("not (not (e[a pr]))", &limits).is_ok());
    let e = parse_filter("not (not ((e[a pr])))", &limits).unwrap_err();
    assert_eq!(e.position, 12, "{e}");
    // Siblings do not add up.
    assert!(parse_filter("(((a pr))) and (((b pr))) or e[x pr]", &limits).is_ok());
}

#[test]
fn configured_depth_is_capped() {
    let limits = FilterLimits {
        max_length: 1_000_000,
        max_depth: usize::MAX,
    };
    let n = HARD_MAX_DEPTH + 1;
    let deep = format!("{}a pr{}", "(".repeat(n), ")".repeat(n));
    let e = parse_filter(&deep, &limits).unwrap_err();
    assert_eq!(e.position, HARD_MAX_DEPTH, "{e}");
    let ok = format!(
        "{}a pr{}",
        "(".repeat(HARD_MAX_DEPTH),
        ")".repeat(HARD_MAX_DEPTH)
    );
    assert_eq!(parse_filter(&ok, &limits).unwrap(), pr("a"));
}

#[test]
fn long_chains_cost_no_stack() {
    // The longest chain the default length limit admits, parsed, printed, evaluated and
    // dropped on a thread with a small stack.
    let term = "a pr or ";
    let n = FilterLimits::default().max_length / term.len();
    let text = format!("{}b pr", term.repeat(n - 1));
    assert!(text.len() <= FilterLimits::default().max_length);
    let handle = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            let f = parse_filter(&text, &FilterLimits::default()).unwrap();
            assert_eq!(f.to_string(), text);
            let hit = matches(&f, &json!({"b": 1}), &NoTypes);
            let miss = matches(&f, &json!({"c": 1}), &NoTypes);
            (hit, miss)
        })
        .unwrap();
    assert_eq!(handle.join().unwrap(), (true, false));
}

#[test]
fn term_limit() {
    let limits = FilterLimits {
        max_length: usize::MAX,
        max_depth: 32,
    };
    let text = format!("{}a pr", "a pr and ".repeat(MAX_TERMS));
    let e = parse_filter(&text, &limits).unwrap_err();
    assert!(e.message.contains("more than 4096 comparisons"), "{e}");
    assert_eq!(e.position, MAX_TERMS * 9 + 2);
    let text = format!("{}a pr", "a pr and ".repeat(MAX_TERMS - 1));
    assert!(parse_filter(&text, &limits).is_ok());
}

// ---------------------------------------------------------------- PATCH and attribute paths

#[test]
fn patch_paths() {
    let p = parse_patch_path("name.givenName").unwrap();
    assert_eq!(p.attr, path("name.givenName"));
    assert_eq!((p.value_filter, p.sub_attr), (None, None));

    let p = parse_patch_path(r#"emails[type eq "work"].value"#).unwrap();
    assert_eq!(p.attr, path("emails"));
    assert_eq!(p.value_filter, Some(cmp("type", CompareOp::Eq, s("work"))));
    assert_eq!(p.sub_attr.as_deref(), Some("value"));
    assert_eq!(p.to_string(), r#"emails[type eq "work"].value"#);

    let p =
        parse_patch_path(r#"members[value eq "2819c223-7f76-453a-919d-413861904646"]"#).unwrap();
    assert_eq!(p.attr, path("members"));
    assert_eq!(p.sub_attr, None);
    assert_eq!(
        p.to_string(),
        r#"members[value eq "2819c223-7f76-453a-919d-413861904646"]"#
    );

    let p = parse_patch_path("emails[primary eq true].value").unwrap();
    assert_eq!(
        p.value_filter,
        Some(cmp("primary", CompareOp::Eq, CompValue::Bool(true)))
    );

    let p = parse_patch_path(&format!("{ENTERPRISE}:manager")).unwrap();
    assert_eq!(p.attr.urn.as_deref(), Some(ENTERPRISE));
    assert_eq!(p.attr.name, "manager");
    assert_eq!(p.to_string(), format!("{ENTERPRISE}:manager"));

    for text in [
        r#"addresses[type eq "work"].postalCode"#,
        r#"phoneNumbers[type eq "mobile"].value"#,
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber",
        r#"emails[type eq "work" and value ew "@example.org"]"#,
    ] {
        let p = parse_patch_path(text).unwrap();
        assert_eq!(p.to_string(), text);
        assert_eq!(parse_patch_path(&p.to_string()).unwrap(), p);
    }
}

#[test]
fn bad_patch_paths() {
    let cases: &[(&str, usize, &str)] = &[
        ("", 0, "empty path"),
        (
            r#"emails[type eq "work"].value eq "x""#,
            29,
            "unexpected 'eq' after the path (expected the end)",
        ),
        (r#"emails[type eq "work""#, 21, "expected ']'"),
        (
            r#"emails[type eq "work"].a.b"#,
            24,
            "only one sub-attribute",
        ),
        ("name.givenName extra", 15, "unexpected 'extra'"),
        (r#"emails[a[b pr]]"#, 8, "'[' inside '['"),
        ("(x)", 0, "expected an attribute name, found '('"),
        ("na me", 3, "unexpected 'me'"),
    ];
    for (input, position, fragment) in cases {
        let e = parse_patch_path(input).unwrap_err();
        assert!(e.message.contains(fragment), "{input:?}: {e}");
        assert_eq!(e.position, *position, "{input:?}: {e}");
    }
}

#[test]
fn attr_paths() {
    assert_eq!(path("userName"), AttrPath::new("userName", None));
    assert_eq!(
        path(" name.familyName "),
        AttrPath::new("name", Some("familyName"))
    );
    let p = path(&format!("{CORE_USER}:userName"));
    assert_eq!(p.to_string(), format!("{CORE_USER}:userName"));
    assert_eq!(
        parse_attr_path("").unwrap_err().message,
        "empty attribute path"
    );
    assert_eq!(parse_attr_path("a b").unwrap_err().position, 2);
    assert_eq!(parse_attr_path("a[x pr]").unwrap_err().position, 1);
    assert_eq!(parse_attr_path("a.b.c").unwrap_err().position, 3);
}

#[test]
fn attr_path_is() {
    let user_name = path("USERNAME");
    assert!(user_name.is("userName"));
    assert!(!user_name.is("userNames"));
    assert!(!user_name.is("name.userName"));
    assert!(path(&format!("{CORE_USER}:userName")).is("userName"));
    assert!(path(&format!("{CORE_USER}:userName")).is(&format!("{CORE_USER}:USERNAME")));
    assert!(!path(&format!("{ENTERPRISE}:userName")).is("userName"));
    assert!(
        path(&format!("{ENTERPRISE}:employeeNumber")).is(&format!("{ENTERPRISE}:employeeNumber"))
    );
    assert!(path("employeeNumber").is(&format!("{ENTERPRISE}:employeeNumber")));
    assert!(
        !path(&format!("{CORE_USER}:employeeNumber")).is(&format!("{ENTERPRISE}:employeeNumber"))
    );
    assert!(path("name.GivenName").is("name.givenName"));
    assert!(!path("name").is("name.givenName"));
    assert!(!path("name.givenName").is("name"));
    assert!(!path("userName").is("not a path"));
}

#[test]
fn equality_on_finds_top_level_and_terms() {
    let f = parse(r#"userName eq "bjensen""#);
    assert_eq!(f.equality_on("userName"), Some(&s("bjensen")));
    assert_eq!(f.equality_on("externalId"), None);

    let f = parse(r#"active eq true and (title pr and USERNAME eq "x")"#);
    assert_eq!(f.equality_on("userName"), Some(&s("x")));
    assert_eq!(f.equality_on("active"), Some(&CompValue::Bool(true)));

    let f = parse(&format!(r#"{CORE_USER}:userName eq "q""#));
    assert_eq!(f.equality_on("userName"), Some(&s("q")));

    // Not under or/not/value filters, not for other operators or null.
    for text in [
        r#"userName eq "x" or title pr"#,
        r#"not (userName eq "x")"#,
        r#"userName ne "x""#,
        r#"userName co "x""#,
        r#"userName eq null"#,
        r#"emails[userName eq "x"]"#,
        r#"name.userName eq "x""#,
    ] {
        assert_eq!(parse(text).equality_on("userName"), None, "{text}");
    }
    assert_eq!(
        parse(r#"emails[type eq "work"].value eq "a@b.c""#).equality_on("emails.value"),
        None
    );
}

// ---------------------------------------------------------------- evaluation

/// A schema lookup that knows nothing: every attribute compares case-insensitively.
struct NoTypes;

impl AttrTypes for NoTypes {
    fn lookup(&self, _: Option<&AttrPath>, _: &AttrPath) -> Option<AttrInfo> {
        None
    }
}

/// A slice of the RFC 7643 User schema, as the engine's schema registry would answer.
struct UserTypes;

impl AttrTypes for UserTypes {
    fn lookup(&self, parent: Option<&AttrPath>, path: &AttrPath) -> Option<AttrInfo> {
        let info = |kind, case_exact, multi_valued| {
            Some(AttrInfo {
                kind,
                case_exact,
                multi_valued,
            })
        };
        let full = match (parent, &path.sub_attr) {
            (Some(p), None) => format!("{}.{}", p.name, path.name),
            (_, Some(sub)) => format!("{}.{sub}", path.name),
            (None, None) => path.name.clone(),
        }
        .to_ascii_lowercase();
        match full.as_str() {
            "id" | "externalid" => info(AttrKind::String, true, false),
            "username" | "displayname" | "title" | "usertype" | "employeenumber" => {
                info(AttrKind::String, false, false)
            }
            "active" => info(AttrKind::Boolean, false, false),
            "meta.lastmodified" | "meta.created" => info(AttrKind::DateTime, false, false),
            "emails" | "phonenumbers" | "x509certificates" => info(AttrKind::Complex, false, true),
            "emails.value" | "emails.type" => info(AttrKind::String, false, false),
            "emails.primary" => info(AttrKind::Boolean, false, false),
            "x509certificates.value" => info(AttrKind::Binary, true, false),
            "logincount" => info(AttrKind::Integer, false, false),
            "manager.value" => info(AttrKind::String, true, false),
            "schemas" => info(AttrKind::Reference, true, true),
            _ => None,
        }
    }
}

fn user() -> Value {
    json!({
        "schemas": [CORE_USER, ENTERPRISE],
        "id": "2819c223-7f76-453a-919d-413861904646",
        "externalId": "Ext-701984",
        "userName": "BJensen@example.com",
        "name": {"familyName": "Jensen", "givenName": "Barbara", "middleName": null},
        "displayName": "Babs Jensen",
        "nickName": "",
        "title": "Tour Guide",
        "userType": "Employee",
        "active": true,
        "loginCount": 12,
        "score": 2.5,
        "emails": [
            {"value": "bjensen@example.com", "type": "work", "primary": true},
            {"value": "babs@jensen.org", "type": "home"}
        ],
        "phoneNumbers": [],
        "roles": [null],
        "x509Certificates": [{"value": "TUlJRE9q"}],
        "groups": ["admins", "staff"],
        "meta": {
            "resourceType": "User",
            "created": "2010-01-23T04:56:22Z",
            "lastModified": "2011-05-13T04:42:34+02:00",
            "version": "W/\"a330bc54f0671c9\""
        },
        ENTERPRISE: {
            "employeeNumber": "701984",
            "department": "Tour Operations",
            "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d", "displayName": "John Smith"}
        }
    })
}

fn check(types: &dyn AttrTypes, resource: &Value, cases: &[(&str, bool)]) {
    for (text, expected) in cases {
        let f = parse(text);
        assert_eq!(
            matches(&f, resource, types),
            *expected,
            "{text} should be {expected}"
        );
    }
}

#[test]
fn strings_honour_case_exact() {
    check(
        &UserTypes,
        &user(),
        &[
            // userName is caseExact=false.
            (r#"userName eq "bjensen@EXAMPLE.com""#, true),
            (r#"username EQ "BJENSEN@example.com""#, true),
            (r#"userName sw "bjen""#, true),
            (r#"userName ew "@Example.COM""#, true),
            (r#"userName co "NSEN@""#, true),
            (r#"userName co "jensen.org""#, false),
            // id and externalId are caseExact=true.
            (r#"id eq "2819c223-7f76-453a-919d-413861904646""#, true),
            (r#"id eq "2819C223-7F76-453A-919D-413861904646""#, false),
            (r#"externalId eq "Ext-701984""#, true),
            (r#"externalId eq "ext-701984""#, false),
            (r#"externalId sw "ext""#, false),
            (r#"externalId sw "Ext""#, true),
            // Unknown attributes compare case-insensitively.
            (r#"nickName eq """#, true),
            (r#"name.familyName eq "JENSEN""#, true),
            (r#"name.familyName co "ENS""#, true),
            // Lexicographic order on strings.
            (r#"title gt "Tour""#, true),
            (r#"title lt "tour guide""#, false),
            (r#"title le "tour guide""#, true),
            (r#"title ge "TOUR GUIDE""#, true),
            (r#"displayName gt "Z""#, false),
        ],
    );
}

#[test]
fn presence() {
    check(
        &UserTypes,
        &user(),
        &[
            ("title pr", true),
            ("nickName pr", false),        // empty string
            ("phoneNumbers pr", false),    // empty array
            ("roles pr", false),           // array of null
            ("name.middleName pr", false), // null
            ("name.givenName pr", true),
            ("name pr", true),
            ("profileUrl pr", false), // missing
            ("emails pr", true),
            ("emails.type pr", true),
            ("emails.display pr", false),
            ("active pr", true),
            ("employeeNumber pr", true),
            (&format!("{ENTERPRISE}:manager pr"), true),
            (&format!("{ENTERPRISE}:manager.value pr"), true),
            (&format!("{ENTERPRISE}:costCenter pr"), false),
        ],
    );
}

#[test]
fn missing_attributes_ne_and_null() {
    check(
        &UserTypes,
        &user(),
        &[
            (r#"profileUrl eq "x""#, false),
            (r#"profileUrl ne "x""#, true),
            (r#"not (profileUrl eq "x")"#, true),
            (r#"profileUrl co "x""#, false),
            (r#"profileUrl gt "a""#, false),
            (r#"profileUrl lt "a""#, false),
            (r#"userType ne "Employee""#, false),
            (r#"userType ne "Intern""#, true),
            // ne on multi-valued: true only when no value equals.
            (r#"emails.type ne "work""#, false),
            (r#"emails.type ne "other""#, true),
            // null: eq means absent, ne means present.
            ("profileUrl eq null", true),
            ("nickName eq null", true),
            ("title eq null", false),
            ("title ne null", true),
            ("name.middleName eq null", true),
            ("emails.value ne null", true),
        ],
    );
}

#[test]
fn numbers_booleans_and_dates() {
    check(
        &UserTypes,
        &user(),
        &[
            ("loginCount eq 12", true),
            ("loginCount eq 12.0", true),
            ("loginCount gt 11", true),
            ("loginCount gt 12", false),
            ("loginCount ge 12", true),
            ("loginCount lt 1e2", true),
            ("loginCount le -1", false),
            (r#"loginCount eq "12""#, false),
            ("score gt 2", true),
            ("score lt 2.51", true),
            ("score eq 2.5", true),
            ("active eq true", true),
            ("active eq false", false),
            ("active ne false", true),
            (r#"active eq "True""#, true),
            (r#"active eq "false""#, false),
            (r#"active eq "yes""#, false),
            // Dates as instants: +02:00 is two hours before the same wall time in Z.
            (r#"meta.lastModified eq "2011-05-13T02:42:34Z""#, true),
            (r#"meta.lastModified gt "2011-05-13T03:00:00Z""#, false),
            (r#"meta.lastModified lt "2011-05-13T03:00:00Z""#, true),
            (r#"meta.lastModified ge "2011-05-13T02:42:34.000Z""#, true),
            (r#"meta.lastModified le "2011-05-13T02:42:33Z""#, false),
            (r#"meta.created gt "2010-01-01T00:00:00-05:00""#, true),
            (r#"meta.created sw "2010-01""#, true),
            (r#"meta.version co "a330""#, true),
        ],
    );
    let r = json!({"when": "2020-01-01T10:00:00+01:00"});
    check(
        &NoTypes,
        &r,
        &[
            (r#"when eq "2020-01-01T09:00:00Z""#, true),
            (r#"when lt "2020-01-01T09:30:00Z""#, true),
            (r#"when gt "not a date""#, false),
        ],
    );
}

#[test]
fn multi_valued_and_value_filters() {
    check(
        &UserTypes,
        &user(),
        &[
            // Any value matches; complex without sub-attribute compares on `value`.
            (r#"emails co "jensen.org""#, true),
            (r#"emails eq "BABS@jensen.org""#, true),
            (r#"emails co "work""#, false),
            (r#"emails.value ew ".org""#, true),
            (r#"emails.type eq "home""#, true),
            (r#"emails.primary eq true"#, true),
            (r#"groups eq "STAFF""#, true),
            (r#"groups sw "adm""#, true),
            (r#"groups eq "x""#, false),
            (r#"x509Certificates eq "TUlJRE9q""#, true),
            (r#"x509Certificates eq "tUlJRE9q""#, false),
            (&format!(r#"schemas eq "{ENTERPRISE}""#), true),
            // Value filters: one element must satisfy the whole filter.
            (
                r#"emails[type eq "work" and value co "@example.com"]"#,
                true,
            ),
            (
                r#"emails[type eq "home" and value co "@example.com"]"#,
                false,
            ),
            (r#"emails[type eq "home" or primary eq true]"#, true),
            (r#"emails[not (type eq "work")]"#, true),
            (r#"emails[primary eq true]"#, true),
            (r#"emails[primary ne true]"#, true),
            (r#"emails[display pr]"#, false),
            (r#"phoneNumbers[type eq "work"]"#, false),
            (r#"groups[value eq "admins"]"#, true),
            (r#"name[familyName eq "jensen"]"#, true),
            (r#"roles[value pr]"#, false),
            // Entra's form.
            (
                r#"emails[type eq "work"].value eq "bjensen@example.com""#,
                true,
            ),
            (
                r#"emails[type eq "home"].value eq "bjensen@example.com""#,
                false,
            ),
            (
                r#"emails[type eq "work"].value eq "BJENSEN@example.com""#,
                true,
            ),
            // RFC combinations.
            (
                r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
                true,
            ),
            (
                r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
                false,
            ),
            (r#"title pr and userType eq "Employee""#, true),
            (r#"title pr and userType eq "Intern""#, false),
            (r#"nickName pr or userType eq "Employee""#, true),
            (r#"nickName pr or userType eq "Intern""#, false),
        ],
    );
}

#[test]
fn extension_attributes_and_urns() {
    check(
        &UserTypes,
        &user(),
        &[
            (&format!(r#"{ENTERPRISE}:employeeNumber eq "701984""#), true),
            (r#"employeeNumber eq "701984""#, true),
            (
                &format!(
                    r#"{}:EMPLOYEENUMBER eq "701984""#,
                    ENTERPRISE.to_uppercase()
                ),
                true,
            ),
            (&format!(r#"{ENTERPRISE}:department sw "tour""#), true),
            (
                &format!(r#"{ENTERPRISE}:manager.value eq "26118915-6090-4610-87e4-49d8ca9f808d""#),
                true,
            ),
            // manager.value is caseExact in this schema.
            (
                &format!(r#"{ENTERPRISE}:manager.value eq "26118915-6090-4610-87E4-49D8CA9F808D""#),
                false,
            ),
            (
                &format!(r#"{ENTERPRISE}:manager eq "26118915-6090-4610-87e4-49d8ca9f808d""#),
                true,
            ),
            (
                &format!(r#"{CORE_USER}:userName eq "bjensen@example.com""#),
                true,
            ),
            (&format!(r#"{CORE_USER}:employeeNumber eq "701984""#), false),
            (
                &format!(r#"{ENTERPRISE}:userName eq "bjensen@example.com""#),
                false,
            ),
            (
                r#"urn:example:other:1.0:User:employeeNumber eq "701984""#,
                false,
            ),
            (
                "urn:ietf:params:scim:schemas:core:2.0:Group:displayName pr",
                true,
            ),
        ],
    );
}

#[test]
fn odd_json_never_matches_by_accident() {
    for resource in [
        json!(null),
        json!("userName"),
        json!([{"userName": "x"}]),
        json!({"userName": {"value": 1}}),
        json!({"userName": [[["x"]]]}),
        json!({"userName": 3}),
    ] {
        for text in [
            r#"userName eq "x""#,
            r#"userName co "x""#,
            r#"userName gt "x""#,
            r#"userName[value eq "x"]"#,
        ] {
            assert!(
                !matches(&parse(text), &resource, &UserTypes),
                "{text} on {resource}"
            );
        }
    }
    assert!(matches(
        &parse("userName pr"),
        &json!({"userName": [[["x"]]]}),
        &NoTypes
    ));
}

#[test]
fn worst_case_trees_fit_a_small_stack() {
    // Deepest nesting and longest chain the hard bounds admit, whatever the configuration:
    // parse, print, evaluate and drop on a thread with 3/8 of tokio's 2 MiB stack (debug
    // build: measured need about 150 KiB for the nesting, 500 KiB to drop the chain).
    let limits = FilterLimits {
        max_length: usize::MAX,
        max_depth: usize::MAX,
    };
    let d = HARD_MAX_DEPTH - 1;
    let nested = format!("{}e[a pr]{}", "not (".repeat(d), ")".repeat(d));
    let chain = format!("{}b pr", "a pr and ".repeat(MAX_TERMS - 1));
    let handle = std::thread::Builder::new()
        .stack_size(768 * 1024)
        .spawn(move || {
            let resource = json!({"a": 1, "b": 2, "e": [{"a": 1}]});
            let mut results = Vec::new();
            for text in [nested, chain] {
                let f = parse_filter(&text, &limits).unwrap();
                assert_eq!(f.to_string(), text);
                results.push(matches(&f, &resource, &NoTypes));
            }
            results
        })
        .unwrap();
    // 63 `not`s: odd, so the nested filter is false.
    assert_eq!(handle.join().unwrap(), vec![false, true]);
}

/// Every filter form scim-interop.md lists for Entra ID and Okta, on the resources they
/// provision, including what a backend would take from `equality_on`.
#[test]
fn entra_and_okta_forms() {
    let entra_user = json!({
        "schemas": [CORE_USER, ENTERPRISE],
        "id": "5f3c4f1e-7d0e-4a53-9e62-2f3a3c5a8f10",
        "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
        "userName": "Ryan@Contoso.com",
        "active": false,
        "displayName": "Ryan Lopez",
        "emails": [{"value": "ryan@contoso.com", "type": "work", "primary": true}],
        ENTERPRISE: {"employeeNumber": "7", "department": "Sales"}
    });
    let group = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "id": "40734ae655284ad3abcc",
        "displayName": "Sales Team",
        "members": [{"value": "5f3c4f1e-7d0e-4a53-9e62-2f3a3c5a8f10", "display": "Ryan"}]
    });
    // (resource, filter, matches, what `equality_on(attr)` gives)
    type Case<'a> = (&'a Value, &'a str, bool, Option<(&'a str, &'a str)>);
    let cases: &[Case] = &[
        // Entra: test connection with a random GUID — parses, matches nothing.
        (
            &entra_user,
            r#"userName eq "b3b6ee8e-6b6f-4e0a-b34a-a10e2e0b8c8e""#,
            false,
            Some(("userName", "b3b6ee8e-6b6f-4e0a-b34a-a10e2e0b8c8e")),
        ),
        // Entra: userName matching is case-insensitive; disabled users still match.
        (
            &entra_user,
            r#"userName eq "ryan@contoso.com""#,
            true,
            Some(("userName", "ryan@contoso.com")),
        ),
        (
            &entra_user,
            r#"externalId eq "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef""#,
            true,
            Some(("externalId", "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef")),
        ),
        (
            &entra_user,
            r#"displayName eq "Ryan Lopez""#,
            true,
            Some(("displayName", "Ryan Lopez")),
        ),
        (
            &entra_user,
            r#"emails[type eq "work"].value eq "ryan@contoso.com""#,
            true,
            None,
        ),
        (
            &entra_user,
            r#"emails[type eq "home"].value eq "ryan@contoso.com""#,
            false,
            None,
        ),
        (
            &entra_user,
            r#"userName eq "ryan@contoso.com" and active eq false"#,
            true,
            Some(("userName", "ryan@contoso.com")),
        ),
        (
            &entra_user,
            &format!(r#"{ENTERPRISE}:employeeNumber eq "7""#),
            true,
            Some((&format!("{ENTERPRISE}:employeeNumber"), "7")),
        ),
        (
            &group,
            r#"displayName eq "Sales Team""#,
            true,
            Some(("displayName", "Sales Team")),
        ),
        (
            &group,
            r#"id eq "40734ae655284ad3abcc" and members[value eq "5f3c4f1e-7d0e-4a53-9e62-2f3a3c5a8f10"]"#,
            true,
            Some(("id", "40734ae655284ad3abcc")),
        ),
        (
            &group,
            r#"members eq "5f3c4f1e-7d0e-4a53-9e62-2f3a3c5a8f10""#,
            true,
            None,
        ),
        (&group, r#"members[value eq "someone-else"]"#, false, None),
        // Okta: existence check before create.
        (
            &entra_user,
            r#"userName eq "RYAN@contoso.com""#,
            true,
            Some(("userName", "RYAN@contoso.com")),
        ),
        (
            &entra_user,
            r#"userName eq "nobody@contoso.com""#,
            false,
            Some(("userName", "nobody@contoso.com")),
        ),
    ];
    for (resource, text, expected, equality) in cases {
        let f = parse(text);
        assert_eq!(matches(&f, resource, &UserTypes), *expected, "{text}");
        if let Some((attr, value)) = equality {
            assert_eq!(f.equality_on(attr), Some(&s(value)), "{text}");
        }
    }
}
