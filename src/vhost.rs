//! (listen address, Host) -> VirtualServer -> Location.
