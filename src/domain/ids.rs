//! Typed identifiers. Ids are UUIDv7 (time-ordered, so they double as a stable pagination key) and are
//! never interchangeable: a `BudgetId` cannot be passed where a `TenantId` is expected.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Uuid);

        impl $name {
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s.trim()).map(Self)
            }
        }
    };
}

id_type!(
    /// A tenant: the unit of isolation. Every row and every audit chain belongs to exactly one.
    TenantId
);
id_type!(
    /// A budget within a tenant.
    BudgetId
);
id_type!(
    /// An issued API token (the id, not the secret).
    TokenId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_are_time_ordered() {
        let a = BudgetId::new();
        let b = BudgetId::new();
        assert!(a.to_string() < b.to_string(), "UUIDv7 text order follows creation order");
        assert_eq!(a.to_string().parse::<BudgetId>().unwrap(), a);
        assert!("not-a-uuid".parse::<BudgetId>().is_err());
    }
}
