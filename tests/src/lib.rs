//! helpers to start real tessera processes
