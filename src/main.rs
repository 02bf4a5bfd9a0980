//! The `oto` command line. Everything lives in the library's `cli`; this only maps the
//! outcome to an exit code (0 success, 1 runtime failure, 2 usage or input error).

fn main() -> std::process::ExitCode {
    oto::cli::main()
}
