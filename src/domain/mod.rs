//! Pure domain logic: the shapes a budget may take and the rules it must obey. Nothing here does IO;
//! time comes in through [`Clock`] so every rule is testable without sleeping.

/// `as_str` and `parse` for a fieldless enum stored as text.
macro_rules! str_enum {
    ($t:ty { $($v:ident => $s:literal),* $(,)? }) => {
        impl $t {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),* }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some(Self::$v),)* _ => None }
            }
        }
    };
}

pub mod action;
pub mod budget;
pub mod channel;
pub mod clock;
pub mod forecast;
pub mod ids;
pub mod period;
pub mod runaway;
pub mod scope_usage;
pub mod threshold;
pub mod usage;
pub mod validation;

pub use budget::{Budget, BudgetPatch, BudgetSpec, MoneyView, Period, Scope, Unit};
pub use clock::{Clock, SystemClock};
pub use ids::{BudgetId, TenantId, TokenId};
pub use validation::ValidationError;
