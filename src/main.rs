// jemalloc rather than glibc's malloc: with reconciles spread over the runtime's worker threads,
// glibc's per-thread arenas held more memory, and jemalloc also cost less CPU per verification
// (BENCHMARKS.md, "Product changes").
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    gitprovider_operator::cli::main()
}
