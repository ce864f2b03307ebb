//! `purser`: see `purser --help`.

use std::process::ExitCode;

fn main() -> ExitCode {
    match purser::cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, the whole cause chain, no backtrace, no panic.
            eprintln!("purser: {e:#}");
            match e.downcast_ref::<purser::cli::ExitWith>() {
                Some(exit) => ExitCode::from(exit.code),
                None => ExitCode::FAILURE,
            }
        }
    }
}
