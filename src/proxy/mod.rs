//! Handles one request: route, forward, answer.
