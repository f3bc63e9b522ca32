//! The `rotor` binary: everything lives in the library; see `rotor::cli`.

/// mimalloc instead of the system allocator: a request allocates and frees a few dozen
/// small blocks (and one or two larger ones), and glibc's malloc spends several
/// thousand instructions a request on them (BENCHMARKS.md, "Cost per request"). Set in
/// the binary only (feature `mimalloc`, on by default): an application embedding the
/// library keeps its own allocator.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    rotor::cli::main()
}
