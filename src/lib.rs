//! kscflow: a passive traffic classifier for Kaspersky Security Center 14.2.
//!
//! It rebuilds every TCP/UDP flow of a capture, decides who initiated it,
//! and holds it against the vendor's port-and-direction table (the seed's
//! topics, as data in `rules/`): **expected**, **insecure**, **unexpected**,
//! and the **missing** flows a deployment should show but does not.
//!
//! Modules, in the one direction data flows:
//!
//! ```text
//! capture ─► decode ─► flow ─► conversation ─► classify ─► report
//!  (files)   (HOT)    (HOT)   (per connection)  (once)     (once)
//!                      ▲            ▲              ▲
//!                      └── rules (table, ports) ───┤
//!                                inventory ────────┘
//! ```
//!
//! [`audit::audit`] wires them for recorded captures; the binary is a thin
//! CLI over it. The hot path is `audit::Engine::on_frame` → `decode::decode`
//! → `flow::FlowTable::update`: no allocation per packet.

#![deny(unsafe_code)]

pub mod audit;
pub mod capture;
pub mod classify;
pub mod conversation;
pub mod decode;
pub mod error;
pub mod flow;
pub mod inventory;
pub mod live;
pub mod merge;
pub mod privileges;
pub mod render;
pub mod report;
pub mod rules;
pub mod tls;

pub use error::{ConfigError, Error};
