//! Bind, accept loop, graceful drain.
