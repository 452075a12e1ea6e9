//! `doctor`'s exit codes: 0 when every check is OK, 1 when one is not, 2 when the checks cannot
//! start (flags, an unreadable kubeconfig).

use super::{runtime, usage_error};
use crate::doctor::{DoctorArgs, Outcome};
use std::process::ExitCode;

pub fn command(args: DoctorArgs) -> ExitCode {
    if args.timeout.is_zero() {
        return usage_error("--timeout must be more than 0s");
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let lines = match rt.block_on(crate::doctor::run(&args)) {
        Ok(lines) => lines,
        Err(error) => return usage_error(error),
    };
    match crate::doctor::print(&lines, args.output) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => {
            eprintln!("error: cannot write the report: {e}");
            return ExitCode::FAILURE;
        }
    }
    if lines.iter().all(|l| l.outcome == Outcome::Ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
