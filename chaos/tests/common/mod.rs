//! What the fault tests share lives in the library: the collection of custom-sharded tenants,
//! the writers, the replica view ([`tessera_chaos::fixture`]) and the nftables cut
//! ([`tessera_chaos::net::CutOff`]). (Each test binary uses part of it.)
#![allow(unused_imports)]

pub use tessera_chaos::fixture::*;
pub use tessera_chaos::net::CutOff;
