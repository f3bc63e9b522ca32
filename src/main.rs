//! The `rotor` binary: everything lives in the library; see `rotor::cli`.

fn main() -> std::process::ExitCode {
    rotor::cli::main()
}
