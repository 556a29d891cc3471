//! The error of reading and checking the configuration: it names the setting and the rule. A module of
//! its own so that the parts of the configuration defined next to their rooms (OAuth) can return it
//! without importing the whole configuration.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid setting `{key}`: {rule}")]
    Invalid { key: &'static str, rule: String },
    #[error("no database URL given and no data directory could be determined; set MBM_DATABASE_URL")]
    NoDataDir,
}
