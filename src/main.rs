//! snp-build: parses the command line and runs it (see `cli`).

fn main() {
    snp_build::cli::main(&snp_build::stage::Registry::standard())
}
