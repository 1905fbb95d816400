//! NICE CXone: the Reporting API client (see `wire` for the types it reads).

pub mod wire;
