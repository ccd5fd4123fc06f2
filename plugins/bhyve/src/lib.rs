//! The bhyve driver: `bhyve:///system`.
pub mod caps;
pub mod command;
pub mod def;
pub mod native;
