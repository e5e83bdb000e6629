//! The `wiremesh` binary: parses the command line and reports errors; all work is in the library.

fn main() -> std::process::ExitCode {
    wiremesh::cli::main()
}
