use std::process::ExitCode;

// Parsing webhook bodies allocates many small values; mimalloc handles that
// better than glibc's malloc under load (measured in BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    hookrunner::cli::main()
}
