//! Cognigy.AI: the OData and REST log client (see `wire` for the types it reads).

pub mod wire;
