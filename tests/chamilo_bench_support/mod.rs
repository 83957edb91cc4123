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
    seed(chamilo, n, false)
}

fn seed(chamilo: &StandinHandle, n: usize, kept: bool) -> Vec<u64> {
    let mut state = chamilo.state();
    (1..=n)
        .map(|i| {
            let mut extra = vec![
                ("scim_user_name".into(), Some(user_name(i))),
                ("scim_external_id".into(), Some(external_id(i))),
            ];
            if kept {
                extra.push(("scim_attributes".into(), Some(entra_kept_field(i))));
            }
            state
                .insert_user(NewUser {
                    username: format!("firstname.lastname{i}"),
                    firstname: Some("Firstname".into()),
                    lastname: format!("Lastname{i}"),
                    email: user_name(i),
                    password: "x".into(),
                    status: 5,
                    extra,
                    ..NewUser::default()
                })
                .expect("a fresh login")
        })
        .collect()
}

/// A small deterministic generator (splitmix64), so that every run seeds the same values.
fn mix(i: usize, salt: u64) -> u64 {
    let mut z = (i as u64)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(salt.wrapping_mul(0xbf58_476d_1ce4_e5b9));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn pick<'a>(pool: &[&'a str], i: usize, salt: u64) -> &'a str {
    pool[(mix(i, salt) % pool.len() as u64) as usize]
}

const GIVEN: &[&str] = &[
    "Amélie",
    "Benoît",
    "Chloé",
    "David",
    "Émilie",
    "François",
    "Gabrielle",
    "Hugo",
    "Isabelle",
    "Jérôme",
    "Karine",
    "Laurent",
    "Mélanie",
    "Nicolas",
    "Olivia",
    "Pierre-Luc",
    "Quentin",
    "Rosalie",
    "Sébastien",
    "Thérèse",
    "Ursule",
    "Vincent",
    "William",
    "Xavier",
    "Yasmine",
    "Zoé",
    "Ahmed",
    "Mei",
    "Priya",
    "Oluwaseun",
    "Sven",
    "Ingrid",
    "Mateo",
    "Lucía",
    "Kenji",
    "Aroha",
    "Fatima",
    "Dmitri",
    "Siobhan",
    "Tomasz",
];
const FAMILY: &[&str] = &[
    "Tremblay",
    "Gagnon",
    "Roy",
    "Côté",
    "Bouchard",
    "Gauthier",
    "Morin",
    "Lavoie",
    "Fortin",
    "Gagné",
    "Ouellet",
    "Pelletier",
    "Bélanger",
    "Lévesque",
    "Bergeron",
    "Leblanc",
    "Paquette",
    "Girard",
    "Simard",
    "Boucher",
    "Caron",
    "Beaulieu",
    "Cloutier",
    "Dubé",
    "Poirier",
    "Smith",
    "Nguyen",
    "Okafor",
    "Kowalski",
    "Haddad",
    "Fernández",
    "O'Brien",
    "Johansson",
    "Tanaka",
    "Patel",
    "Müller",
    "Rossi",
    "Ivanova",
    "Ngata",
    "Lefebvre-Martin",
];
const TITLES: &[&str] = &[
    "Lecturer",
    "Senior Lecturer",
    "Associate Professor",
    "Professor",
    "Teaching Assistant",
    "Research Assistant",
    "Postdoctoral Fellow",
    "Lab Technician",
    "Librarian",
    "Academic Advisor",
    "Program Coordinator",
    "Administrative Assistant",
    "IT Support Analyst",
    "Registrar Officer",
    "Instructional Designer",
    "Student",
    "Graduate Student",
    "Department Chair",
    "Dean of Studies",
    "Admissions Officer",
    "Financial Aid Counselor",
    "Career Services Advisor",
    "Accessibility Coordinator",
    "Research Coordinator",
];
const DEPARTMENTS: &[&str] = &[
    "Chemistry",
    "Physics",
    "Mathematics & Statistics",
    "Computer Science",
    "Biology",
    "History",
    "Philosophy",
    "Modern Languages",
    "Economics",
    "Psychology",
    "Sociology",
    "Nursing",
    "Mechanical Engineering",
    "Civil Engineering",
    "Electrical Engineering",
    "Faculty of Education",
    "Faculty of Law",
    "Library Services",
    "Information Technology",
    "Student Affairs",
    "Registrar",
    "Human Resources",
    "Finance",
    "Continuing Education",
    "Music",
];
const STREETS: &[&str] = &[
    "Rue Sherbrooke Ouest",
    "Boulevard René-Lévesque",
    "Avenue du Parc",
    "Rue Sainte-Catherine",
    "Chemin de la Côte-des-Neiges",
    "University Street",
    "Rue Saint-Denis",
    "Avenue McGill College",
    "Boulevard de Maisonneuve",
    "Rue Peel",
    "Avenue des Pins",
    "Rue Jeanne-Mance",
    "Queen's Park Crescent",
    "College Street",
    "King Street West",
];
const CITIES: &[(&str, &str, &str)] = &[
    ("Montréal", "QC", "H3A"),
    ("Québec", "QC", "G1R"),
    ("Sherbrooke", "QC", "J1K"),
    ("Gatineau", "QC", "J8X"),
    ("Toronto", "ON", "M5S"),
    ("Ottawa", "ON", "K1N"),
    ("Laval", "QC", "H7N"),
];
const LANGUAGES: &[&str] = &["fr-CA", "en-CA", "fr-CA", "en-US", "es-ES"];

/// The `scim_attributes` field of seeded account `i` as the proxy writes it for a user sent
/// with Entra ID's default attribute mapping (displayName, title, preferredLanguage,
/// name.formatted, the work e-mail, a work address, work/mobile/fax phone numbers, and the
/// enterprise employeeNumber, department and manager), plus the dates of the proxy's writes.
/// Values vary per user like real ones (names, titles and departments from pools, numbers and
/// the manager's GUID drawn per user), so that they do not compress trivially.
pub fn entra_kept_field(i: usize) -> String {
    use chamilo_scim_proxy::chamilo::kept::KeptAttributes;
    use chamilo_scim_proxy::chamilo::mapping::ChamiloMapping;
    use chamilo_scim_proxy::directory::User;
    use serde_json::json;

    let given = pick(GIVEN, i, 1);
    let family = pick(FAMILY, i, 2);
    let (city, region, postal) = CITIES[(mix(i, 3) % CITIES.len() as u64) as usize];
    let r = mix(i, 4);
    let street = format!("{} {}", 10 + r % 4990, pick(STREETS, i, 5));
    let postal = format!(
        "{postal} {}{}{}",
        (r >> 16) % 10,
        char::from(b'A' + ((r >> 20) % 26) as u8),
        (r >> 28) % 10
    );
    let phone = |salt: u64, area: &str| {
        let p = mix(i, salt);
        format!("+1 {area} {:03} {:04}", 200 + p % 800, (p >> 16) % 10_000)
    };
    let g = |salt| mix(i, salt);
    let manager = format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        g(6) as u32,
        g(7) as u16,
        g(8) % 0x1000,
        0x8000 | (g(9) % 0x4000),
        g(10) % (1 << 48)
    );
    let day = |salt: u64| {
        let d = mix(i, salt);
        format!(
            "2026-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            1 + d % 11,
            1 + (d >> 8) % 28,
            (d >> 16) % 24,
            (d >> 24) % 60,
            (d >> 32) % 60,
            (d >> 40) % 1000
        )
    };
    let user = json!({
        "userName": user_name(i),
        "externalId": external_id(i),
        "active": true,
        "displayName": format!("{given} {family}"),
        "title": pick(TITLES, i, 11),
        "preferredLanguage": pick(LANGUAGES, i, 12),
        "name": {"formatted": format!("{given} {family}"), "givenName": given, "familyName": family},
        "emails": [{"value": user_name(i), "type": "work", "primary": true}],
        "addresses": [{
            "type": "work",
            "formatted": format!("{street}\n{city} {region} {postal}\nCanada"),
            "streetAddress": street,
            "locality": city,
            "region": region,
            "postalCode": postal,
            "country": "CA",
            "primary": true
        }],
        "phoneNumbers": [
            {"value": phone(13, "514"), "type": "work"},
            {"value": phone(14, "438"), "type": "mobile"},
            {"value": phone(15, "514"), "type": "fax"}
        ],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
            "employeeNumber": format!("{:07}", mix(i, 16) % 10_000_000),
            "department": pick(DEPARTMENTS, i, 17),
            "manager": {"value": manager}
        }
    });
    let serde_json::Value::Object(map) = user else {
        unreachable!()
    };
    let mapped = ChamiloMapping::default()
        .map(&User::from_json(map))
        .expect("a valid user");
    KeptAttributes {
        created: Some(day(18)),
        last_modified: Some(day(19)),
        ..mapped.kept
    }
    .encode()
}

/// As [`seed_managed`], each account also carrying the `scim_attributes` field of
/// [`entra_kept_field`].
pub fn seed_managed_kept(chamilo: &StandinHandle, n: usize) -> Vec<u64> {
    seed(chamilo, n, true)
}
