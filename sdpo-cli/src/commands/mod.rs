//! The `sdpo` subcommands, one module each.

pub mod compare;
pub mod eval;
pub mod export;
pub mod generate;
pub mod inspect;
pub mod train;
