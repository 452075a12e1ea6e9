fn main() -> std::process::ExitCode {
    gitprovider_operator::cli::main()
}
