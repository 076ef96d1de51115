//! Running one handler: spawn it in its own process group, feed stdin, capture
//! output, enforce the timeout, and stop the whole group when asked.

pub mod files;
pub mod inherited;
mod kill;
pub mod output;
pub mod program;
mod spawn;

pub use kill::{group_alive, kill_group, parse_stat, ProcStat};
pub use output::OutputDir;
pub use program::{Program, Template};
pub use spawn::{run, Ending, OutputFiles, RunSpec, Stop};
