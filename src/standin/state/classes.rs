//! Classes (usergroups) and courses, with their members and subscriptions.

use super::{sql_eq, ChamiloState};

/// A Chamilo usergroup: a class (type 0) or a social group (type 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub id: u64,
    pub name: String,
    pub description: String,
    pub visibility: String,
    pub group_type: i64,
    /// `(user id, relation_type)` in membership-row order.
    pub members: Vec<(u64, i64)>,
}

/// A course and its subscriptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Course {
    pub id: u64,
    pub code: String,
    pub title: String,
    /// `(user id, status)`: 1 teacher, 5 student.
    pub users: Vec<(u64, i64)>,
}

impl ChamiloState {
    /// Every group in id order.
    pub fn groups(&self) -> impl Iterator<Item = &Group> {
        self.groups.values()
    }

    /// A group by id.
    pub fn group(&self, id: u64) -> Option<&Group> {
        self.groups.get(&id)
    }

    /// A group by id, for edits.
    pub fn group_mut(&mut self, id: u64) -> Option<&mut Group> {
        self.groups.get_mut(&id)
    }

    /// A group by name (case-insensitive).
    pub fn group_by_name(&self, name: &str) -> Option<&Group> {
        self.groups.values().find(|g| sql_eq(&g.name, name))
    }

    /// Creates a group; returns its id.
    pub fn insert_group(
        &mut self,
        name: &str,
        description: &str,
        visibility: &str,
        group_type: i64,
    ) -> u64 {
        let id = self.next_group_id;
        self.next_group_id += 1;
        self.groups.insert(
            id,
            Group {
                id,
                name: name.to_owned(),
                description: description.to_owned(),
                visibility: visibility.to_owned(),
                group_type,
                members: Vec::new(),
            },
        );
        id
    }

    /// Deletes a group.
    pub fn remove_group(&mut self, id: u64) -> bool {
        self.groups.remove(&id).is_some()
    }

    /// Every course in id order.
    pub fn courses(&self) -> impl Iterator<Item = &Course> {
        self.courses.values()
    }

    /// A course by id.
    pub fn course(&self, id: u64) -> Option<&Course> {
        self.courses.get(&id)
    }

    /// A course by id, for edits.
    pub fn course_mut(&mut self, id: u64) -> Option<&mut Course> {
        self.courses.get_mut(&id)
    }

    /// A course id by code (case-insensitive).
    pub fn course_by_code(&self, code: &str) -> Option<u64> {
        self.courses
            .values()
            .find(|c| c.code.eq_ignore_ascii_case(code))
            .map(|c| c.id)
    }

    /// Creates a course; `None` when the code exists.
    pub fn insert_course(&mut self, code: &str, title: &str) -> Option<u64> {
        if self.course_by_code(code).is_some() {
            return None;
        }
        let id = self.next_course_id;
        self.next_course_id += 1;
        self.courses.insert(
            id,
            Course {
                id,
                code: code.to_owned(),
                title: title.to_owned(),
                users: Vec::new(),
            },
        );
        Some(id)
    }
}
