//! `gitprovider-operator version` and `--version`: the crate version, the git commit and the
//! build date that build.rs stamped into the binary.

use clap::{Args, ValueEnum};
use std::process::ExitCode;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const COMMIT: &str = env!("GPO_GIT_COMMIT");
pub const BUILD_DATE: &str = env!("GPO_BUILD_DATE");

/// What `--version` prints after the program name.
pub const VERSION_LINE: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("GPO_GIT_COMMIT"),
    ", built ",
    env!("GPO_BUILD_DATE"),
    ")"
);

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum VersionFormat {
    Text,
    Json,
}

#[derive(Args, Debug)]
pub struct VersionArgs {
    /// Output format.
    #[arg(short, long, value_enum, default_value = "text")]
    pub output: VersionFormat,
}

pub fn print(args: &VersionArgs) -> ExitCode {
    match args.output {
        VersionFormat::Text => {
            println!("gitprovider-operator {VERSION}\ncommit:     {COMMIT}\nbuild date: {BUILD_DATE}");
        }
        VersionFormat::Json => {
            let json = serde_json::json!({ "version": VERSION, "commit": COMMIT, "buildDate": BUILD_DATE });
            println!("{json}");
        }
    }
    ExitCode::SUCCESS
}
