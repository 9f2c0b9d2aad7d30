//! The sync worker.
