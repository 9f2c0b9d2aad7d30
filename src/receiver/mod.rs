//! The webhook receiver.
