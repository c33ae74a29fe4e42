//! Node-to-node transport (QUIC with mutual TLS): being built.
