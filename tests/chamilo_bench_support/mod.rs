//! Seeding shared by the Chamilo measurements (`chamilo_rss`, `chamilo_bench_http`): a
//! stand-in filled like a real install where every account was provisioned through SCIM, so
//! that the listing carries both extra fields and the index holds every key.
#![allow(dead_code)]

use chamilo_scim_proxy::standin::{NewUser, StandinHandle};

/// The userName (an Entra-style UPN, also the e-mail) of seeded account `i`.
pub fn user_name(i: usize) -> String {
    format!("firstname.lastname{i}@example-university.org")
}

/// The externalId (a GUID-shaped value) of seeded account `i`.
pub fn external_id(i: usize) -> String {
    format!("{:08x}-1d2c-4b7a-9e3f-{:012x}", i * 7919, i)
}

/// Adds accounts `1..=n`, each with both SCIM extra fields; returns their ids.
pub fn seed_managed(chamilo: &StandinHandle, n: usize) -> Vec<u64> {
    let mut state = chamilo.state();
    (1..=n)
        .map(|i| {
            state
                .insert_user(NewUser {
                    username: format!("firstname.lastname{i}"),
                    firstname: Some("Firstname".into()),
                    lastname: format!("Lastname{i}"),
                    email: user_name(i),
                    password: "x".into(),
                    status: 5,
                    extra: vec![
                        ("scim_user_name".into(), Some(user_name(i))),
                        ("scim_external_id".into(), Some(external_id(i))),
                    ],
                    ..NewUser::default()
                })
                .expect("a fresh login")
        })
        .collect()
}
