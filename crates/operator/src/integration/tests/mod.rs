//! Tests of the integration reconciler: pure tests of the build and status steps, and scenarios
//! against a fake API server for what only a sequence of calls shows.
