//! `[[chamilo.enrolment]]`: course enrolment by group, as configured and checked (with key
//! and line). The Chamilo backend turns it into rules (`chamilo::enrolment`).

use serde::Deserialize;

use super::error::{ConfigError, Document};
use super::ChamiloConfig;

/// One `[[chamilo.enrolment]]` entry: the members of the matching groups are enrolled in
/// `courses` with `role`. Exactly one of `display_name` and `external_id` is given.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EnrolmentConfig {
    /// A pattern on the group's `displayName`: `*` any run of characters, `?` one character,
    /// case-insensitive.
    pub display_name: Option<String>,
    /// The group's `externalId`, exactly.
    pub external_id: Option<String>,
    /// Chamilo course codes.
    pub courses: Vec<String>,
    /// `student` (the default) or `teacher`.
    #[serde(default = "default_enrolment_role")]
    pub role: String,
}

/// What the loader accepts as a course code: Chamilo makes codes of letters, digits, `_`
/// and `-` (and the web services look them up as given), at most 40 characters.
pub fn check_course_code(code: &str) -> Result<(), String> {
    if code.is_empty() || code.len() > 40 {
        return Err(format!(
            "'{code}' is not a course code (1 to 40 characters)"
        ));
    }
    if !code
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!(
            "'{code}' is not a course code (letters, digits, '_' and '-')"
        ));
    }
    Ok(())
}

fn default_enrolment_role() -> String {
    "student".to_owned()
}

/// `[[chamilo.enrolment]]`: each entry names its groups one way, at least one course code
/// Chamilo could have made, and a known role. (The same checks as
/// `EnrolmentRules::from_config` in the Chamilo backend, here with key and line.)
pub(crate) fn validate(c: &ChamiloConfig, doc: &Document<'_>, errors: &mut Vec<ConfigError>) {
    for (i, e) in c.enrolment.iter().enumerate() {
        let key = |field: &str| format!("chamilo.enrolment[{i}].{field}");
        match (&e.display_name, &e.external_id) {
            (Some(p), None) if p.trim().is_empty() => {
                errors.push(doc.error_at(&key("display_name"), "must not be empty"))
            }
            (None, Some(x)) if x.is_empty() => {
                errors.push(doc.error_at(&key("external_id"), "must not be empty"))
            }
            (Some(_), None) | (None, Some(_)) => {}
            (Some(_), Some(_)) => errors.push(doc.error_at(
                &key("external_id"),
                "give either display_name or external_id, not both",
            )),
            (None, None) => errors.push(doc.error_at(
                &format!("chamilo.enrolment[{i}]"),
                "needs display_name (a pattern such as \"Course *\") or external_id",
            )),
        }
        if e.courses.is_empty() {
            errors.push(doc.error_at(&key("courses"), "name at least one course code"));
        }
        for code in &e.courses {
            if let Err(m) = check_course_code(code) {
                errors.push(doc.error_at(&key("courses"), m));
            }
        }
        if !matches!(e.role.to_ascii_lowercase().as_str(), "student" | "teacher") {
            errors.push(doc.error_at(
                &key("role"),
                format!("unknown '{}' (student, teacher)", e.role),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::load::tests::{load_text, with_token};

    #[test]
    fn enrolment_entries_are_checked_with_key_and_line() {
        let text = "[chamilo]\nenrolment_dry_run = false\n\n[[chamilo.enrolment]]\ndisplay_name = \"Course *\"\ncourses = [\"MATH101\"]\n\n[[chamilo.enrolment]]\nexternal_id = \"g1\"\ncourses = [\"A B\"]\nrole = \"admin\"\n\n[[chamilo.enrolment]]\ncourses = []\n";
        let err = load_text(text, with_token()).unwrap_err();
        let found: Vec<_> = err
            .errors
            .errors
            .iter()
            .map(|e| (e.key.clone().unwrap_or_default(), e.position.map(|p| p.0)))
            .collect();
        for (key, line) in [
            ("chamilo.enrolment[1].courses", Some(10)),
            ("chamilo.enrolment[1].role", Some(11)),
            ("chamilo.enrolment[2]", Some(13)),
            ("chamilo.enrolment[2].courses", Some(14)),
        ] {
            assert!(found.contains(&(key.to_owned(), line)), "{key}: {found:?}");
        }
        assert_eq!(found.len(), 4, "{found:?}");
        // The test-group example is a valid [chamilo] section, in dry run.
        let example = include_str!("../../examples/enrolment-test-group.toml");
        let loaded = load_text(example, with_token()).unwrap();
        assert!(loaded.config.chamilo.enrolment_dry_run);
        assert_eq!(loaded.config.chamilo.enrolment[0].courses, ["MATH101"]);
        assert_eq!(loaded.config.chamilo.enrolment[0].role, "student");
    }
}
