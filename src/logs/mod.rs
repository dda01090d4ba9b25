//! Log intelligence: every log message becomes a template id, a template and its
//! parameters, so that SQL can count and compare them and models can find the unusual ones.
//!
//! - [`shape`] reads a message: tokens, and the segments that are values by their look;
//! - [`miner`] groups shapes into templates online, learning parameters from evidence;
//! - [`enrich`] fills the logs batch's template columns and gives SQL `log_template()`;
//! - [`anomaly`] finds new templates, bursts of rare ones and unusual mixes, with the
//!   trained model of [`patterns`];
//! - [`file`] mines one log file (`lookout templates`), [`loghub`] scores that against
//!   the Loghub benchmark's labels.

pub mod anomaly;
pub mod enrich;
pub mod file;
pub mod loghub;
pub mod miner;
pub mod patterns;
mod shape;

pub use anomaly::{LogAnomalies, LogAnomalyConfig};
pub use enrich::{enrich, LogTemplateUdf, SharedMiner};
pub use miner::{Miner, MinerConfig, Template, TemplateChange, PARAM};

#[cfg(test)]
mod tests;

#[cfg(test)]
mod anomaly_tests;
