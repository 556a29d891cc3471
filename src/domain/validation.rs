//! The one error type for rejected input: it names the offending field (as a JSON path such as
//! `scope.team_ids[2]`) and the rule that was broken, so a human or an agent can fix the call.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    /// JSON path of the offending argument, e.g. `limit` or `period.end`.
    pub field: String,
    /// The rule, phrased so that it completes "`field` ...", e.g. "must be between 1 and 10".
    pub rule: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, rule: impl Into<String>) -> Self {
        Self { field: field.into(), rule: rule.into() }
    }

    /// Prefix the field path with its parent, for rules checked on nested values.
    pub fn within(mut self, parent: &str) -> Self {
        self.field = if self.field.starts_with('[') {
            format!("{parent}{}", self.field)
        } else {
            format!("{parent}.{}", self.field)
        };
        self
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid argument `{}`: {}", self.field, self.rule)
    }
}

/// Check a free-text value: trimmed length within bounds and no control characters.
pub fn text(field: &str, value: &str, min: usize, max: usize) -> Result<String, ValidationError> {
    let trimmed = value.trim();
    let len = trimmed.chars().count();
    if len < min || len > max {
        let rule = if min == 0 {
            format!("must be at most {max} characters (got {len})")
        } else {
            format!("must be {min} to {max} characters after trimming (got {len})")
        };
        return Err(ValidationError::new(field, rule));
    }
    if trimmed.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(ValidationError::new(field, "must not contain control characters"));
    }
    Ok(trimmed.to_owned())
}

/// The largest integer every JSON client reads exactly (2^53 − 1): the bound of ids and sequence numbers.
pub const JSON_INT_MAX: i64 = 9_007_199_254_740_991;

/// Check an integer lies in `min..=max`.
pub fn int_range(field: &str, value: i64, min: i64, max: i64) -> Result<i64, ValidationError> {
    if value < min || value > max {
        return Err(ValidationError::new(field, format!("must be between {min} and {max} (got {value})")));
    }
    Ok(value)
}

/// Check a list of 1 to `max` ids, each in `1..=id_max`, none twice.
pub fn unique_ids(field: &str, ids: &[i64], max: usize, id_max: i64) -> Result<Vec<i64>, ValidationError> {
    if ids.is_empty() || ids.len() > max {
        return Err(ValidationError::new(field, format!("must list 1 to {max} ids (got {})", ids.len())));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, id) in ids.iter().enumerate() {
        int_range(&format!("[{i}]"), *id, 1, id_max).map_err(|e| e.within(field))?;
        if !seen.insert(*id) {
            return Err(ValidationError::new(field, format!("lists {id} twice")));
        }
    }
    Ok(ids.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_lists_are_bounded_and_unique() {
        assert_eq!(unique_ids("ids", &[3, 1], 5, 10).unwrap(), vec![3, 1]);
        assert!(unique_ids("ids", &[], 5, 10).unwrap_err().rule.contains("1 to 5"));
        assert_eq!(unique_ids("ids", &[1, 11], 5, 10).unwrap_err().field, "ids[1]");
        assert!(unique_ids("ids", &[2, 2], 5, 10).unwrap_err().rule.contains("lists 2 twice"));
    }

    #[test]
    fn text_trims_and_bounds() {
        assert_eq!(text("name", "  ops  ", 1, 10).unwrap(), "ops");
        let e = text("name", "   ", 1, 10).unwrap_err();
        assert_eq!(e.field, "name");
        assert!(e.rule.contains("1 to 10"), "{e}");
        assert!(text("name", "a\u{0}b", 1, 10).is_err());
        assert!(text("d", &"x".repeat(11), 0, 10).unwrap_err().rule.contains("at most 10"));
    }

    #[test]
    fn within_builds_json_paths() {
        let e = ValidationError::new("[2]", "must be positive").within("team_ids").within("scope");
        assert_eq!(e.field, "scope.team_ids[2]");
        assert_eq!(e.to_string(), "invalid argument `scope.team_ids[2]`: must be positive");
    }
}
