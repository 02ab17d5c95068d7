//! wsrelay-bench: measurement tools for wsrelay's WebSocket layer.
//!
//! * [`server`] serves HTTP/1.1 with upgrades on a current-thread runtime (one core per server).
//! * [`bare`] holds the bare echo handlers of the candidate libraries (`bare-echo` binary).
//! * [`echo`], [`idle`], [`broadcast`], [`upgrade`] are the load generator's subcommands
//!   (`wsrelay-bench` binary); a new subcommand gets a module of its own and a variant in
//!   [`cli::Command`].
//! * [`dial`] opens client connections; [`latency`] holds the histograms and percentiles.
//! * [`sys`] reads RSS and raises the open-file limit.

pub mod bare;
pub mod broadcast;
pub mod cli;
pub mod dial;
pub mod echo;
pub mod idle;
pub mod latency;
pub mod server;
pub mod sys;
pub mod upgrade;
