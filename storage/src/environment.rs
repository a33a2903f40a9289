//! The settings `serval storage-init` reads, under KServe's variable names. Captured once
//! from the process at the edge, so everything below takes a plain map.

use std::collections::BTreeMap;

use crate::redact::{Redactor, SECRET_VARIABLES};

#[derive(Clone, Debug, Default)]
pub struct Environment {
    vars: BTreeMap<String, String>,
}

impl Environment {
    pub fn from_process() -> Self {
        Self::from_pairs(std::env::vars())
    }

    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        Self {
            vars: pairs.into_iter().collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// KServe's booleans: "1"/"0", "true"/"false".
    pub fn flag(&self, name: &str) -> Option<bool> {
        self.get(name)
            .map(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
    }

    pub fn prefixed<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.vars
            .iter()
            .filter(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// A redactor that masks every credential this environment holds.
    pub fn redactor(&self) -> Redactor {
        Redactor::new(
            SECRET_VARIABLES
                .iter()
                .filter_map(|name| self.get(name).map(str::to_string)),
        )
    }
}
