//! Standalone mode: the whole system on one machine with no cluster.
