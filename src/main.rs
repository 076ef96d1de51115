use std::process::ExitCode;

fn main() -> ExitCode {
    hookrunner::cli::main()
}
