//! Throughput figures for the filter parser and evaluator. Prints numbers, asserts nothing
//! about time (timing depends on the machine):
//! `cargo test --test filter_bench -- --ignored --nocapture` (add `--release` for real figures).

use std::hint::black_box;
use std::time::Instant;

use chamilo_scim_proxy::directory::query::{matches, AttrInfo, AttrKind, AttrPath, AttrTypes};
use chamilo_scim_proxy::scim::filter::{parse_filter, FilterLimits};
use serde_json::{json, Value};

struct UserTypes;

impl AttrTypes for UserTypes {
    fn lookup(&self, _: Option<&AttrPath>, path: &AttrPath) -> Option<AttrInfo> {
        let string = |case_exact| AttrInfo {
            kind: AttrKind::String,
            case_exact,
            multi_valued: false,
        };
        if path.is("userName") {
            Some(string(false))
        } else if path.is("externalId") || path.is("id") {
            Some(string(true))
        } else {
            None
        }
    }
}

fn users(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "id": format!("id-{i}"),
                "externalId": format!("ext-{i}"),
                "userName": format!("User{i}@example.org"),
                "name": {"givenName": "Given", "familyName": format!("Family{i}")},
                "active": i % 2 == 0,
                "emails": [
                    {"value": format!("user{i}@example.org"), "type": "work", "primary": true},
                    {"value": format!("user{i}@home.example"), "type": "home"}
                ],
                "meta": {"lastModified": "2024-05-13T04:42:34Z"},
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
                    "employeeNumber": format!("{i}")
                }
            })
        })
        .collect()
}

fn per_second(count: usize, secs: f64) -> f64 {
    count as f64 / secs
}

#[test]
#[ignore = "benchmark: prints figures"]
fn filter_throughput() {
    let limits = FilterLimits::default();
    let filters = [
        r#"userName eq "user4999@EXAMPLE.org""#,
        r#"emails[type eq "work"].value eq "user4999@example.org""#,
        r#"active eq true and (name.familyName sw "Family49" or emails co "home.example") and not (externalId eq "ext-1")"#,
        r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber ge "4990" and meta.lastModified gt "2020-01-01T00:00:00+01:00""#,
    ];
    let iterations = 20_000;
    for text in filters {
        let start = Instant::now();
        for _ in 0..iterations {
            black_box(parse_filter(black_box(text), &limits).ok());
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "parse   {:>9.0} filters/s  ({:>6.2} µs each)  {text}",
            per_second(iterations, secs),
            secs * 1e6 / iterations as f64
        );
    }
    let long = format!("{}userName pr", "userName eq \"x\" or ".repeat(200));
    let start = Instant::now();
    for _ in 0..1000 {
        black_box(parse_filter(black_box(&long), &limits).ok());
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "parse   {:>9.0} filters/s  ({:>6.2} µs each)  {}-character or-chain of 201 terms",
        per_second(1000, secs),
        secs * 1e6 / 1000.0,
        long.len()
    );

    let population = users(10_000);
    for text in filters {
        let f = parse_filter(text, &limits).unwrap();
        let start = Instant::now();
        let hits = population
            .iter()
            .filter(|u| matches(&f, u, &UserTypes))
            .count();
        let secs = start.elapsed().as_secs_f64();
        println!(
            "match   {:>9.0} users/s    ({hits} of {} matched)  {text}",
            per_second(population.len(), secs),
            population.len()
        );
    }
}
