//! Pure domain logic: the shapes a budget may take and the rules it must obey. Nothing here does IO;
//! time comes in through [`Clock`] so every rule is testable without sleeping.

pub mod action;
pub mod budget;
pub mod clock;
pub mod forecast;
pub mod ids;
pub mod period;
pub mod threshold;
pub mod validation;

pub use budget::{Budget, BudgetPatch, BudgetSpec, MoneyView, Period, Scope, Unit};
pub use clock::{Clock, SystemClock};
pub use ids::{BudgetId, TenantId, TokenId};
pub use validation::ValidationError;
