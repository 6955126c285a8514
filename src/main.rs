//! The `faiss-nn` command line; everything is in [`faiss_nn::cli`].

fn main() -> std::process::ExitCode {
    faiss_nn::cli::main()
}
