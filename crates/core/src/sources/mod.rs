//! Data sources: the shared HTTP polling layer and one client per API with its wire types.
//!
//! `http` owns timeouts, retries, rate limits and request accounting; `cxone` and `cognigy` only
//! build requests and parse responses. `lenient` holds the forgiving deserializers both need.

pub mod cognigy;
pub mod cxone;
pub mod http;
pub mod lenient;
