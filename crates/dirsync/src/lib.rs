//! The directory synchronisation agent.

pub mod state;
