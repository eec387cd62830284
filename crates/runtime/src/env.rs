//! Reading settings from environment variables: defaults, parsing, and errors that name the
//! variable.

use std::collections::HashMap;

/// A variable that is set but cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{name}={value:?}: {reason}")]
pub struct BadVar {
    pub name: &'static str,
    pub value: String,
    pub reason: String,
}

/// The variables of the process, as a map, so that config loading can be tested with any map.
pub fn vars() -> HashMap<String, String> {
    std::env::vars().collect()
}

/// A map of variables from `(name, value)` pairs, as tests and tools build them.
pub fn from_pairs(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Reads an optional variable with a default, parsing it with `FromStr`.
pub fn parse_or<T>(
    vars: &HashMap<String, String>,
    name: &'static str,
    default: T,
) -> Result<T, BadVar>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    match vars.get(name).filter(|v| !v.trim().is_empty()) {
        None => Ok(default),
        Some(raw) => raw.trim().parse().map_err(|e: T::Err| BadVar {
            name,
            value: raw.clone(),
            reason: e.to_string(),
        }),
    }
}

/// Reads an optional string variable with a default.
pub fn string_or(vars: &HashMap<String, String>, name: &str, default: &str) -> String {
    vars.get(name)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .unwrap_or(default)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Numbers parse, blanks take the default, garbage is an error naming the variable.
    #[test]
    fn parse_or_reports_the_variable() {
        assert_eq!(
            parse_or(&from_pairs(&[("N", " 7 ")]), "N", 1u64).unwrap(),
            7
        );
        assert_eq!(parse_or(&from_pairs(&[("N", "")]), "N", 1u64).unwrap(), 1);
        let err = parse_or(&from_pairs(&[("N", "x")]), "N", 1u64).unwrap_err();
        assert!(err.to_string().starts_with("N=\"x\""), "{err}");
    }
}
