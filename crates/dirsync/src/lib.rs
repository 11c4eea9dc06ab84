//! The directory synchronisation agent.
