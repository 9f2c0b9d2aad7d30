//! Reconcilers of the operator.
