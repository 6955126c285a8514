//! The `faiss-nn` command line (feature `cli`, on by default): flags, progress bar and demo live
//! here, in the binary; the library carries none of them.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
